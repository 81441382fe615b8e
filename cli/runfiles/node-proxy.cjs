// credgate run: HTTPS_PROXY for https.request/https.get (and HTTP_PROXY
// for http.request/http.get) on Node versions
// that do not read it themselves (before NODE_USE_ENV_PROXY, which Node
// 20 ignores). Loaded with NODE_OPTIONS=--require; on a Node whose global
// agent already follows the proxy variables it does nothing. It tunnels through the proxy with CONNECT, sending the
// proxy URL's user:password as Proxy-Authorization: Basic, and leaves
// hosts in NO_PROXY alone. fetch() is not covered on old Node.
'use strict';
(function () {
  const raw = process.env.https_proxy || process.env.HTTPS_PROXY;
  if (!raw) return;
  const https = require('https');
  if (https.globalAgent && https.globalAgent.options && https.globalAgent.options.proxyEnv) return;
  const net = require('net');
  const tls = require('tls');
  const proxy = new URL(raw);
  const auth = proxy.username || proxy.password
    ? 'Basic ' + Buffer.from(decodeURIComponent(proxy.username) + ':' + decodeURIComponent(proxy.password)).toString('base64')
    : '';
  const noProxy = (process.env.no_proxy || process.env.NO_PROXY || '').split(',')
    .map((s) => s.trim().toLowerCase()).filter(Boolean);
  const bypass = (host) => {
    host = String(host).toLowerCase().replace(/^\[|\]$/g, '');
    return noProxy.some((p) => p === '*' || host === p || host.endsWith(p.startsWith('.') ? p : '.' + p));
  };
  class TunnelAgent extends https.Agent {
    createConnection(options, cb) {
      const host = options.host || 'localhost';
      if (bypass(host)) return super.createConnection(options, cb);
      const target = (net.isIPv6(host) ? '[' + host + ']' : host) + ':' + (options.port || 443);
      const sock = net.connect(Number(proxy.port) || 80, proxy.hostname.replace(/^\[|\]$/g, ''));
      let head = Buffer.alloc(0);
      const fail = (err) => { sock.destroy(); cb(err); };
      const onData = (chunk) => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > 65536) fail(new Error('credgate run: the proxy answered CONNECT with oversized headers'));
          return;
        }
        sock.removeListener('data', onData);
        sock.removeListener('error', fail);
        const status = head.toString('latin1', 0, end).split('\r\n')[0];
        if (!/^HTTP\/1\.[01] 200/.test(status)) {
          fail(new Error('credgate run: the gateway refused CONNECT ' + target + ': ' + status));
          return;
        }
        cb(null, tls.connect(Object.assign({}, options, { socket: sock })));
      };
      sock.on('data', onData);
      sock.once('error', fail);
      sock.once('connect', () => {
        sock.write('CONNECT ' + target + ' HTTP/1.1\r\nHost: ' + target + '\r\n' +
          (auth ? 'Proxy-Authorization: ' + auth + '\r\n' : '') + '\r\n');
      });
      return undefined;
    }
  }
  https.globalAgent = new TunnelAgent({ keepAlive: true });

  // http.request/http.get: sent to the proxy as absolute-URI requests
  // (GET http://host/path) with the token, as curl and Python send them;
  // without this, plain http:// went direct on Node 20.
  const http = require('http');
  if (http.globalAgent && http.globalAgent.options && http.globalAgent.options.proxyEnv) return;
  const hraw = process.env.http_proxy || process.env.HTTP_PROXY;
  if (!hraw) return;
  const hproxy = new URL(hraw);
  const hauth = hproxy.username || hproxy.password
    ? 'Basic ' + Buffer.from(decodeURIComponent(hproxy.username) + ':' + decodeURIComponent(hproxy.password)).toString('base64')
    : '';
  class ForwardAgent extends http.Agent {
    addRequest(req, options) {
      const host = options.host || options.hostname || 'localhost';
      if (!bypass(host)) {
        const port = Number(options.port) || 80;
        req.path = 'http://' + (net.isIPv6(host) ? '[' + host + ']' : host) + (port === 80 ? '' : ':' + port) + req.path;
        if (hauth) req.setHeader('Proxy-Authorization', hauth);
        options = Object.assign({}, options, { host: hproxy.hostname.replace(/^\[|\]$/g, ''), hostname: undefined, port: Number(hproxy.port) || 80, socketPath: undefined });
      }
      return super.addRequest(req, options);
    }
  }
  http.globalAgent = new ForwardAgent({ keepAlive: true });
})();
