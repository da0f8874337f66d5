// Package miniotest starts a real MinIO server on 127.0.0.1 for tests, and
// stops it by its PID when the test ends.
package miniotest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/store"
)

// Server is a running MinIO. Its methods may be called from any goroutine.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	AccessKey string // MINIO_ROOT_USER (a test value)
	SecretKey string // MINIO_ROOT_PASSWORD (a test value)

	bin, dataDir, logPath string
	addr, consoleAddr     string
	st                    *store.S3
	opts                  Options
	client                *http.Client // for the health check

	mu     sync.Mutex
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed when cmd has been waited for
}

// Options are the rarer ways to start MinIO.
type Options struct {
	// CertsDir holds public.crt and private.key: MinIO then serves HTTPS
	// (its --certs-dir) and Endpoint is https://127.0.0.1:PORT.
	CertsDir string
	// CABundle is the PEM file of the CA that signed public.crt, trusted
	// by the Server's own client.
	CABundle string
	// Region, if set, is the server's region (MINIO_SITE_REGION):
	// requests signed for another one are refused, as AWS does. Unset,
	// MinIO takes any signing region.
	Region string
}

// Start starts MinIO with a fresh data folder. Without a minio binary the
// test is skipped, or fails under CI (CI must never pass by skipping).
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with Options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	bin := findBinary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no minio binary: set MPCFS_MINIO_BIN or run `make minio`")
		}
		t.Skip("no minio binary: run `make minio` (GOBIN=~/.cache/mpcfs/bin go install github.com/minio/minio@latest)")
	}
	dir := t.TempDir()
	s := &Server{AccessKey: "mpcfs-test", SecretKey: "mpcfs-test-secret", bin: bin,
		dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "minio.log"),
		addr: freeAddr(t), consoleAddr: freeAddr(t), opts: o, client: &http.Client{Timeout: time.Second}}
	s.Endpoint = "http://" + s.addr
	if o.CertsDir != "" {
		s.Endpoint = "https://" + s.addr
		pem, err := os.ReadFile(o.CABundle)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	region := o.Region
	if region == "" {
		region = "us-east-1"
	}
	st, err := store.NewS3(store.S3Config{Endpoint: s.Endpoint, Region: region, AccessKey: s.AccessKey, SecretKey: s.SecretKey, CABundle: o.CABundle})
	if err != nil {
		t.Fatal(err)
	}
	s.st = st
	t.Cleanup(s.Stop)
	s.start(t)
	return s
}

// findBinary: $MPCFS_MINIO_BIN, the repo's .cache/bin, ~/.cache/mpcfs/bin, PATH.
func findBinary() string {
	var candidates []string
	if b := os.Getenv("MPCFS_MINIO_BIN"); b != "" {
		candidates = append(candidates, b)
	}
	if root := repoRoot(); root != "" {
		candidates = append(candidates, filepath.Join(root, ".cache", "bin", "minio"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".cache", "mpcfs", "bin", "minio"))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c
		}
	}
	p, _ := exec.LookPath("minio")
	return p
}

func repoRoot() string {
	dir, err := os.Getwd()
	for err == nil {
		if _, e := os.Stat(filepath.Join(dir, "go.mod")); e == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	return ""
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	args := []string{"server", "--quiet", "--address", s.addr, "--console-address", s.consoleAddr}
	if s.opts.CertsDir != "" {
		args = append(args, "--certs-dir", s.opts.CertsDir)
	}
	cmd := exec.Command(s.bin, append(args, s.dataDir)...)
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.AccessKey, "MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	if s.opts.Region != "" {
		cmd.Env = append(cmd.Env, "MINIO_SITE_REGION="+s.opts.Region)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting minio: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd = cmd
	s.exited = exited
	if err := s.waitReady(exited, 60*time.Second); err != nil {
		s.stopLocked()
		log, _ := os.ReadFile(s.logPath)
		t.Logf("minio log (%s):\n%s", s.logPath, log)
		t.Fatalf("minio did not start: %v", err)
	}
}

// waitReady polls the liveness endpoint, then lists buckets: "live" can come
// before the object layer accepts requests.
func (s *Server) waitReady(exited <-chan struct{}, timeout time.Duration) error {
	client := s.client
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("minio exited during startup")
		case <-time.After(100 * time.Millisecond):
		}
		if !s.live(client) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := s.st.Buckets(ctx)
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("no answer on %s within %v", s.Endpoint, timeout)
}

// live reports whether /minio/health/live answers 200.
func (s *Server) live(client *http.Client) bool {
	resp, err := client.Get(s.Endpoint + "/minio/health/live")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s) and keeps its
// data, to play a store that went away. Safe to call twice.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
}

// stopLocked signals the server's own PID only (never by name).
func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	cmd, exited := s.cmd, s.exited
	s.cmd, s.exited = nil, nil
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// Restart starts the server again on the same address and data folder and
// waits until it serves requests (stopping it first if it is running).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.start(t)
}

// Store is the server's client (one per Server, shared by callers).
func (s *Server) Store() *store.S3 { return s.st }

// MakeBucket creates a bucket or fails the test.
func (s *Server) MakeBucket(t testing.TB, name string) {
	t.Helper()
	if err := s.st.MakeBucket(context.Background(), name); err != nil {
		t.Fatal(err)
	}
}

// PutFile stores an object or fails the test.
func (s *Server) PutFile(t testing.TB, bucket, key string, data []byte) {
	t.Helper()
	if err := s.st.Put(context.Background(), bucket, key, data); err != nil {
		t.Fatal(err)
	}
}
