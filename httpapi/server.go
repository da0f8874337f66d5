// Package httpapi is mpcfs's HTTP side, for clients and players that do
// not mount:
//
//	POST   /v1/{project_id}/encryptions   create a task (the MPC API)
//	GET    /v1/{project_id}/encryptions   query tasks
//	DELETE /v1/{project_id}/encryptions   cancel a task
//	GET    /buckets/<bucket>/<key>        task outputs, encrypted as sent
//	GET    /metrics, /healthz
//
// The API is authenticated with Huawei Cloud's AK/SK signatures (auth.go);
// the origin and /metrics, /healthz are open. It sits on a control.Manager,
// the one a mount in the same process uses, so both show the same tasks.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mpcfs/mpcfs/control"
)

// Config configures a Server.
type Config struct {
	Manager     *control.Manager
	Credentials Credentials
	// CORSOrigins are the browser origins allowed to fetch from the
	// origin ("*": any); none: no CORS headers.
	CORSOrigins []string
	// CacheMaxAge is the origin's Cache-Control max-age (0: DefaultCacheMaxAge;
	// < 0: no-cache).
	CacheMaxAge time.Duration
	Log         *log.Logger // never given a key or a secret
	// Now is the clock the signatures' dates are checked against (tests).
	Now func() time.Time
}

// DefaultCacheMaxAge is how long caches may serve an output without asking
// again: outputs of a task never change, but a canceled or replaced task's
// outputs must leave caches soon; revalidation by ETag is cheap.
const DefaultCacheMaxAge = time.Minute

// Failed authentications allowed per client address: a burst, then one
// every failRefill.
const (
	failBurst  = 20
	failRefill = 3 * time.Second
)

// Server is the HTTP handler.
type Server struct {
	cfg     Config
	mgr     *control.Manager
	creds   atomic.Pointer[Credentials] // swapped whole by SetCredentials
	decoy   string
	limiter *failLimiter
	log     *log.Logger
	now     func() time.Time
	cors    map[string]bool
	maxAge  time.Duration
	streams chan struct{} // a token per segment response being streamed (nil: no bound)
	qwait   time.Duration // how long a response waits for a token
}

// New returns a Server. The credentials may be empty: then every API
// request is refused (401) and only the origin and /metrics serve.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg, mgr: cfg.Manager, limiter: newFailLimiter(failBurst, failRefill),
		log: cfg.Log, now: cfg.Now, cors: map[string]bool{}, maxAge: cfg.CacheMaxAge}
	if s.log == nil {
		s.log = log.New(io.Discard, "", 0)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.maxAge == 0 {
		s.maxAge = DefaultCacheMaxAge
	}
	if s.mgr != nil { // nil: the signature checks alone (tests)
		if t := s.mgr.Tuning(); t.OriginStreams > 0 {
			s.streams, s.qwait = make(chan struct{}, t.OriginStreams), t.OriginQueueWait
		}
	}
	s.SetCredentials(cfg.Credentials)
	s.decoy = randomHex(32)
	for _, o := range cfg.CORSOrigins {
		if o = strings.TrimSpace(o); o != "" {
			s.cors[o] = true
		}
	}
	registerMetrics()
	return s
}

// SetCredentials replaces the API users (SIGHUP reloads the file): requests
// checked from then on use the new set; none is half-seen.
func (s *Server) SetCredentials(c Credentials) {
	if c == nil {
		c = Credentials{}
	}
	s.creds.Store(&c)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("httpapi: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// ServeHTTP routes by path. No redirects and no path cleaning: a path that
// is not exactly one of ours is 404.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, code: http.StatusOK}
	id := randomHex(16)
	w.Header().Set("X-Request-Id", id)
	route := "other"
	defer func() {
		observe(route, r.Method, rec.code, rec.bytes, time.Since(start))
	}()
	p := r.URL.Path
	switch {
	case p == "/healthz":
		route = "healthz"
		s.healthz(rec, r)
	case p == "/metrics":
		route = "metrics"
		serveMetrics(rec, r)
	case strings.HasPrefix(p, "/v1/"):
		route = "api"
		s.api(rec, r, id)
	case strings.HasPrefix(p, "/buckets/"):
		route = "origin"
		s.origin(rec, r, id)
	default:
		writeError(rec, http.StatusNotFound, codeNoAPI, "no such resource: the API is /v1/{project_id}/encryptions, the origin /buckets/<bucket>/<key>")
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

// recorder remembers a response's status and size for the metrics.
type recorder struct {
	http.ResponseWriter
	code        int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.code, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Error codes of our own, beside the MPC ones (control.Code*). The API
// gateway's codes are the ones Huawei Cloud's gateway answers with.
const (
	codeAuth      = "APIGW.0301" // authentication failed
	codeThrottled = "APIGW.0308" // too many requests
	codeNoAPI     = "APIGW.0101" // no such API
	codeMethod    = "APIGW.0102" // method not allowed
)

// writeJSON writes a JSON body with its status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error_code":"MPC.10212","error_msg":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, &control.APIError{Code: code, Msg: msg})
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, codeMethod, "method not allowed: use "+allow)
}

// clientAddr is the address failed authentications are counted against:
// the peer's IP (a proxy in front would need its own limits).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Serve serves on ln until ctx is done, then stops taking requests and
// lets those in flight finish for up to grace before closing them.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, lg *log.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          lg,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		lg.Printf("http: requests still running after %v: closing them", grace)
		srv.Close()
	}
	if e := <-done; !errors.Is(e, http.ErrServerClosed) {
		return e
	}
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("http shutdown: %w", err)
	}
	return nil
}

// ListenAddr is addr with a missing host made 127.0.0.1: listening on
// every interface must be asked for (0.0.0.0:PORT or [::]:PORT).
func ListenAddr(addr string) (string, error) {
	if !strings.Contains(addr, ":") {
		addr = ":" + addr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--listen %q: %w", addr, err)
	}
	if port == "" {
		return "", fmt.Errorf("--listen %q: no port", addr)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
