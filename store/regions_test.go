package store_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// startRequestLog starts a reverse proxy in front of MinIO that records
// every request (method and URI) it passes on.
func startRequestLog(t *testing.T, endpoint string) (*testutil.Requests, string) {
	up, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	l := &testutil.Requests{}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(up)
		r.Out.Host = r.In.Host // what the client signed
		l.Add(r.In.Method + " " + r.In.URL.RequestURI())
	}}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return l, srv.URL
}

// TestLearnRegions: with no region configured, the first request to a
// bucket waits for its location (a round trip more on the first byte of
// the first segment read from it) unless LearnRegions asked it before.
func TestLearnRegions(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	srv.PutFile(t, "media", "seg.ts", []byte("0123456789"))
	log, ep := startRequestLog(t, srv.Endpoint)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	firstRead := func(st *store.S3) []string {
		t.Helper()
		log.Take()
		rc, err := st.Open(ctx, "media", "seg.ts", 0, 4)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(rc); string(b) != "0123" {
			t.Errorf("read %q", b)
		}
		rc.Close()
		return log.Take()
	}

	unlearned, err := store.NewS3(store.S3Config{Endpoint: ep, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	// The condition LearnRegions removes: without it the GET waits for
	// a location request.
	if reqs := firstRead(unlearned); len(reqs) != 2 {
		t.Fatalf("first read of a bucket with no region known: requests %q, want the location and the GET", reqs)
	}

	learned, err := store.NewS3(store.S3Config{Endpoint: ep, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	learned.LearnRegions(ctx)
	if reqs := firstRead(learned); len(reqs) != 1 || reqs[0][:3] != http.MethodGet {
		t.Errorf("first read after LearnRegions: requests %q, want the GET alone", reqs)
	}
}

// TestHasPrefixOneRequest: whether a folder exists is one listing of at
// most one key, even for a folder of more objects than a listing page
// (1000) holds. Listing it whole (List) is the negative control: pages.
func TestHasPrefixOneRequest(t *testing.T) {
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	log, ep := startRequestLog(t, srv.Endpoint)
	st, err := store.NewS3(store.S3Config{Endpoint: ep, AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const objects = 1001
	sem := make(chan struct{}, 16)
	errs := make(chan error, objects)
	for i := range objects {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			errs <- st.Put(ctx, "media", fmt.Sprintf("big/%04d.ts", i), []byte("x"))
		}()
	}
	for range objects {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	log.Take()
	if ok, err := st.HasPrefix(ctx, "media", "big/"); !ok || err != nil {
		t.Fatalf("HasPrefix(big/) = %v, %v", ok, err)
	}
	reqs := log.Take()
	if len(reqs) != 1 || !strings.Contains(reqs[0], "max-keys=1") {
		t.Errorf("HasPrefix of a folder of %d objects: requests %q, want one listing with max-keys=1", objects, reqs)
	}
	if l, err := st.List(ctx, "media", "big/"); err != nil || len(l.Objects) != objects {
		t.Fatalf("List(big/) = %d objects, %v", len(l.Objects), err)
	}
	if reqs := log.Take(); len(reqs) < 2 {
		t.Errorf("listing the folder whole took requests %q: the control should page", reqs)
	}
}
