package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// s3Log is a logging reverse proxy in front of the store, used only by
// the --debug mount: it records every object GET (key, bytes sent), so the
// request-size pass also shows what the daemon fetched for each reader
// style - GET sizes, segments fetched more than once, bytes fetched per
// byte read. The Host header is passed on unchanged, so the clients'
// SigV4 signatures (made for the proxy's address) still verify.
type s3Log struct {
	mu    sync.Mutex
	gets  []*s3Get
	reqs  []s3Req // every request, the task store's too
	addr  string
	srv   *http.Server
	start time.Time
}

type s3Get struct {
	key   string // bucket/key
	rng   string // the Range header, "" for the whole object
	at    time.Duration
	bytes atomic.Int64
}

// s3Req is one request of any kind through the logging proxy: what a
// reader's open and first read cost in round trips shows here.
type s3Req struct {
	method, target, rng string        // target: path?query
	at, headers         time.Duration // sent (since the proxy started); its response's headers after that
	status              int
}

// loggingTransport records every request the proxy passes on.
type loggingTransport struct{ sl *s3Log }

func (t loggingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	q := s3Req{method: r.Method, target: r.URL.RequestURI(), rng: r.Header.Get("Range"), at: time.Since(t.sl.start)}
	resp, err := http.DefaultTransport.RoundTrip(r)
	q.headers = time.Since(t.sl.start) - q.at
	if resp != nil {
		q.status = resp.StatusCode
	}
	t.sl.mu.Lock()
	t.sl.reqs = append(t.sl.reqs, q)
	t.sl.mu.Unlock()
	return resp, err
}

// markReqs is the position in the request log to list from.
func (sl *s3Log) markReqs() int {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return len(sl.reqs)
}

// reqsSince lists the requests since a mark, one a line: when sent
// (relative to t0, since the proxy started), method, target, Range,
// status, time to the response headers.
func (sl *s3Log) reqsSince(from int, t0 time.Duration) string {
	sl.mu.Lock()
	reqs := append([]s3Req(nil), sl.reqs[from:]...)
	sl.mu.Unlock()
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].at < reqs[j].at })
	var s strings.Builder
	for _, q := range reqs {
		fmt.Fprintf(&s, "  +%7.1f ms  %-4s %-60s %-24s %d in %.1f ms\n", float64((q.at-t0).Microseconds())/1000,
			q.method, q.target, orDash(q.rng), q.status, float64(q.headers.Microseconds())/1000)
	}
	return s.String()
}

func (b *bench) startS3Log() (*s3Log, error) {
	up, err := url.Parse(b.ep)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sl := &s3Log{addr: l.Addr().String(), start: time.Now()}
	rp := &httputil.ReverseProxy{
		Transport: loggingTransport{sl},
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			r.Out.Host = r.In.Host // what the client signed
		},
		ModifyResponse: func(resp *http.Response) error {
			req := resp.Request
			if req.Method != http.MethodGet || req.URL.RawQuery != "" || strings.HasPrefix(strings.TrimPrefix(req.URL.Path, "/"), sysBucket+"/") {
				return nil // listings, bucket queries and the task store are not reads
			}
			g := &s3Get{key: strings.TrimPrefix(req.URL.Path, "/"), rng: req.Header.Get("Range"), at: time.Since(sl.start)}
			sl.mu.Lock()
			sl.gets = append(sl.gets, g)
			sl.mu.Unlock()
			resp.Body = &countingBody{ReadCloser: resp.Body, n: &g.bytes}
			return nil
		},
	}
	sl.srv = &http.Server{Handler: rp}
	go sl.srv.Serve(l)
	b.atExit(func() { sl.srv.Close() })
	return sl, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// mark is the position to summarise from.
func (sl *s3Log) mark() int {
	sl.mu.Lock()
	defer sl.mu.Unlock()
	return len(sl.gets)
}

// getStats summarises GETs made since a mark.
type getStats struct {
	gets      int
	bytes     int64
	refetched int // objects whose GETs sent more than the object's size
	read      int64
}

func (sl *s3Log) since(from int, sizes map[string]int64, read int64) getStats {
	sl.mu.Lock()
	gets := append([]*s3Get(nil), sl.gets[from:]...)
	sl.mu.Unlock()
	return summariseGets(gets, sizes, read)
}

func summariseGets(gets []*s3Get, sizes map[string]int64, read int64) getStats {
	st := getStats{gets: len(gets), read: read}
	per := map[string]int64{}
	for _, g := range gets {
		n := g.bytes.Load()
		st.bytes += n
		per[g.key] += n
	}
	keys := make([]string, 0, len(per))
	for k := range per {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if size, ok := sizes[k]; ok && per[k] > size {
			st.refetched++
		}
	}
	return st
}

func (s getStats) String() string {
	if s.gets == 0 {
		return "-"
	}
	return fmt.Sprintf("%d GETs of mean %s; fetched %.2fx the bytes read; %d objects fetched more than once",
		s.gets, mib(s.bytes/int64(s.gets)), float64(s.bytes)/float64(max(s.read, 1)), s.refetched)
}

// writeLog lists the GETs since a mark, one a line (time since the proxy
// started, object, Range, bytes sent), for reading what a style caused.
func (sl *s3Log) writeLog(path string, from int) error {
	sl.mu.Lock()
	gets := append([]*s3Get(nil), sl.gets[from:]...)
	sl.mu.Unlock()
	var s strings.Builder
	for _, g := range gets {
		fmt.Fprintf(&s, "%10.3f s  %-40s %-28s %d\n", g.at.Seconds(), g.key, orDash(g.rng), g.bytes.Load())
	}
	return os.WriteFile(path, []byte(s.String()), 0o644)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
