// Package miniotest starts a real MinIO server on 127.0.0.1, for tests
// (Start) and for the bench (Launch), and stops it by its PID. It is the
// one place that knows how to run MinIO.
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
	"strings"
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

// Options are the rarer ways to start MinIO for a test.
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

// Start starts MinIO with a fresh data folder for a test and stops it
// when the test ends. Without a minio binary the test is skipped, or
// fails under CI (CI must never pass by skipping).
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with Options.
func StartWith(t testing.TB, o Options) *Server {
	t.Helper()
	bin := FindBinary()
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no minio binary: set MPCFS_MINIO_BIN or run `make minio`")
		}
		t.Skip("no minio binary: run `make minio`")
	}
	dir := t.TempDir()
	s, err := Launch(Config{Bin: bin, DataDir: filepath.Join(dir, "data"), LogPath: filepath.Join(dir, "minio.log"),
		AccessKey: "mpcfs-test", SecretKey: "mpcfs-test-secret", Options: o})
	if s != nil {
		t.Cleanup(s.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Config says how to launch a MinIO.
type Config struct {
	Bin                  string // the minio binary (FindBinary)
	DataDir              string // its data folder (created)
	LogPath              string // its stdout and stderr, appended
	AccessKey, SecretKey string // the root credentials it is started with
	Options                     // TLS
}

// Launch starts MinIO on free 127.0.0.1 ports and waits until it serves
// requests. The caller stops it (Stop); on error the returned Server, if
// any, has been stopped already.
func Launch(c Config) (*Server, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	console, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	s := &Server{AccessKey: c.AccessKey, SecretKey: c.SecretKey, bin: c.Bin,
		dataDir: c.DataDir, logPath: c.LogPath, addr: addr, consoleAddr: console,
		opts: c.Options, client: &http.Client{Timeout: time.Second}}
	s.Endpoint = "http://" + s.addr
	if c.CertsDir != "" {
		s.Endpoint = "https://" + s.addr
		pem, err := os.ReadFile(c.CABundle)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		s.client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	s.st, err = store.NewS3(store.S3Config{Endpoint: s.Endpoint, Region: region, AccessKey: s.AccessKey, SecretKey: s.SecretKey, CABundle: c.CABundle})
	if err != nil {
		return nil, err
	}
	if err := s.start(); err != nil {
		return s, err
	}
	return s, nil
}

// Pid is the running server's process id (0 while stopped), for CPU and
// I/O accounting.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Running reports whether the server process has not exited.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// FindBinary: $MPCFS_MINIO_BIN, the repo's .cache/bin, ~/.cache/mpcfs/bin,
// PATH; "" when there is none.
func FindBinary() string {
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

// FreeAddr is a free 127.0.0.1 port to listen on.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func (s *Server) start() error {
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
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
		return fmt.Errorf("starting minio: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd = cmd
	s.exited = exited
	if err := s.waitReady(exited, 60*time.Second); err != nil {
		s.stopLocked()
		log, _ := os.ReadFile(s.logPath)
		return fmt.Errorf("minio did not start: %w; its log (%s):\n%s", err, s.logPath, log)
	}
	return nil
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
		if err == nil {
			err = s.iamReady(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("no answer on %s within %v", s.Endpoint, timeout)
}

// iamReady reports whether MinIO's IAM sub-system answers: the root user
// is served before it is, so a loaded machine could otherwise hand a test
// a server that says "IAM sub-system not initialized yet" to any other
// credentials (a profile, STS). A request with unknown credentials gets
// a plain refusal once IAM is up.
func (s *Server) iamReady(ctx context.Context) error {
	probe, err := store.NewS3(store.S3Config{Endpoint: s.Endpoint, Region: "us-east-1", AccessKey: "mpcfs-iam-probe",
		SecretKey: "mpcfs-iam-probe-secret", CABundle: s.opts.CABundle})
	if err != nil {
		return err
	}
	_, err = probe.Buckets(ctx)
	if err != nil && strings.Contains(strings.ToLower(err.Error()), "not initialized") {
		return err
	}
	return nil
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
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
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

// Freeze stops the server's process (SIGSTOP to its own PID): connections
// are accepted by the kernel but never answered, like a hung store.
// Thaw (SIGCONT) resumes it; Freeze registers Thaw as a cleanup.
func (s *Server) Freeze(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		t.Fatal("minio is not running")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Thaw)
}

// Thaw resumes a frozen server; safe to call when it is not frozen.
func (s *Server) Thaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.cmd.Process.Signal(syscall.SIGCONT)
	}
}
