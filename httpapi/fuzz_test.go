package httpapi

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mpcfs/mpcfs/control"
)

// FuzzServe sends arbitrary paths, methods and Range/conditional headers
// to a Server with one SUCCEEDED task: it must never fail (5xx) or panic,
// never serve a source's bytes, and never create a task.
func FuzzServe(f *testing.F) {
	e := newEnv(f, Config{CORSOrigins: []string{"*"}})
	id := e.create("out")
	e.waitStatus(id, control.Succeeded)
	for _, s := range []struct{ method, path, rng, cond string }{
		{"GET", "/buckets/public/out/seg0.ts", "bytes=0-99", ""},
		{"GET", "/buckets/media/vod/seg0.ts", "", ""},
		{"HEAD", "/buckets/public/out/../../media/vod/seg0.ts", "bytes=-5", `"x"`},
		{"GET", "/buckets/public/out%2fseg1.ts", "bytes=5-", "W/\"a\""},
		{"POST", "/v1/proj01/encryptions", "", ""},
		{"OPTIONS", "/buckets/public/out/index.m3u8", "", ""},
		{"GET", "/v1/proj01/encryptions?task_id=1,2&size=0", "", ""},
	} {
		f.Add(s.method, s.path, s.rng, s.cond)
	}
	tasks := len(e.mgr.TaskIDs())
	f.Fuzz(func(t *testing.T, method, path, rng, cond string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.Method, r.URL.Opaque, r.RequestURI = method, "", ""
		if err := setPath(r, path); err != nil {
			return
		}
		r.Header.Set("Range", rng)
		r.Header.Set("If-Range", cond)
		r.Header.Set("If-None-Match", cond)
		r.Header.Set("Origin", "https://x.example")
		w := httptest.NewRecorder()
		e.api.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %q: %d %s", method, path, w.Code, w.Body)
		}
		body := w.Body.Bytes()
		for name, src := range e.src {
			if len(body) >= 16 && bytes.Contains(src, body) && name != "index.m3u8" {
				t.Fatalf("%s %q served bytes of source %s", method, path, name)
			}
		}
		if w.Header().Get("X-Request-Id") == "" {
			t.Fatalf("no X-Request-Id")
		}
		if n := len(e.mgr.TaskIDs()); n != tasks {
			t.Fatalf("a task was created by an unsigned request")
		}
	})
}

// setPath sets a raw request path as a server would parse it.
func setPath(r *http.Request, raw string) error {
	u, err := r.URL.Parse(raw)
	if err != nil {
		return err
	}
	r.URL = u
	return nil
}
