package vaulttest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credgate/credgate/internal/freeport"
)

// Real is a real Vault-compatible server to run tests against.
type Real struct {
	// Addr is the server's URL.
	Addr string
	// Token is a token allowed to mount engines and auth methods.
	Token string
	// Kind says where it came from, for the test log: "VAULT_ADDR",
	// "vault binary" or "bao binary".
	Kind string

	cmd  *exec.Cmd
	home string
	out  *bytes.Buffer
	done chan struct{}
}

// FindReal returns a real server when one is available: the server at
// VAULT_ADDR when VAULT_TOKEN is also set, else a `vault` or `bao` binary
// on PATH started as `server -dev` on a free port of 127.0.0.1 with a
// random root token. It returns (nil, nil) when there is none, and an
// error when a binary was found but its server did not come up. Stop the
// result when done.
func FindReal(ctx context.Context) (*Real, error) {
	if addr, tok := os.Getenv("VAULT_ADDR"), os.Getenv("VAULT_TOKEN"); addr != "" && tok != "" {
		return &Real{Addr: strings.TrimRight(addr, "/"), Token: tok, Kind: "VAULT_ADDR"}, nil
	}
	for _, bin := range []string{"vault", "bao"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			continue
		}
		return startDev(ctx, bin, path)
	}
	return nil, nil
}

// startDev starts `BIN server -dev` and waits until it is unsealed.
func startDev(ctx context.Context, bin, path string) (*Real, error) {
	port, err := freeport.Port()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := "dev-" + hex.EncodeToString(b)
	home, err := os.MkdirTemp("", "vaulttest-")
	if err != nil {
		return nil, err
	}
	r := &Real{Addr: "http://" + addr, Token: tok, Kind: bin + " binary", home: home, out: &bytes.Buffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(path, "server", "-dev", "-dev-listen-address="+addr, "-dev-root-token-id="+tok)
	// The dev server writes ~/.vault-token; keep it out of the real home.
	r.cmd.Env = append(os.Environ(), "HOME="+home, "VAULT_ADDR=", "VAULT_TOKEN=", "BAO_ADDR=", "BAO_TOKEN=")
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return r.out.Write(p) })
	r.cmd.Stdout, r.cmd.Stderr = w, w
	if err := r.cmd.Start(); err != nil {
		_ = os.RemoveAll(home)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.Addr+"/v1/sys/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case <-r.done:
			mu.Lock()
			out := r.out.String()
			mu.Unlock()
			r.Stop()
			return nil, fmt.Errorf("%s server -dev exited: %s", bin, lastLines(out, 10))
		case <-ctx.Done():
			r.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond): // polling a child process; no event to wait on
		}
		if time.Now().After(deadline) {
			r.Stop()
			return nil, errors.New(bin + " server -dev did not become healthy within 60s")
		}
	}
}

// Stop stops a server this package started; for VAULT_ADDR it does
// nothing.
func (r *Real) Stop() {
	if r == nil || r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.done
	_ = os.RemoveAll(r.home)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
