// Package socket looks at the socket under a connection without reading
// it: whether a byte, the end of the stream or an error waits there. The
// h1 server waits on it for an idle client connection's next request
// with a small stack; the h1client checks that a pooled upstream
// connection was neither closed nor sent anything while it was idle.
package socket
