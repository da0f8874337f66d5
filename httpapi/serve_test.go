package httpapi

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// slowHandler writes half its body, waits, then the rest: a response in
// flight when shutdown starts.
func slowHandler(wait time.Duration, started chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "01234")
		w.(http.Flusher).Flush()
		started <- struct{}{}
		time.Sleep(wait)
		io.WriteString(w, "56789")
	})
}

func serveSlow(t *testing.T, wait, grace time.Duration) (body string, err error, served time.Duration) {
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	started := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, slowHandler(wait, started), grace, log.New(io.Discard, "", 0)) }()
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- result{"", err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{string(b), err}
	}()
	<-started
	start := time.Now()
	cancel() // SIGTERM
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	served = time.Since(start)
	r := <-got
	// A new connection is refused once Serve has returned.
	if _, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
		t.Errorf("still serving after shutdown")
	}
	return r.body, r.err, served
}

func TestServeShutdownLetsResponsesFinish(t *testing.T) {
	body, err, took := serveSlow(t, 700*time.Millisecond, 10*time.Second)
	if err != nil || body != "0123456789" {
		t.Fatalf("response in flight at shutdown: %q, %v", body, err)
	}
	if took < 500*time.Millisecond {
		t.Fatalf("Serve returned %v after shutdown began, before the response ended", took)
	}
}

func TestServeShutdownIsBounded(t *testing.T) {
	body, err, took := serveSlow(t, 5*time.Second, 300*time.Millisecond)
	if err == nil || strings.HasSuffix(body, "56789") {
		t.Fatalf("a response longer than the grace finished: %q, %v", body, err)
	}
	if took > 3*time.Second {
		t.Fatalf("Serve took %v with a grace of 300ms", took)
	}
}
