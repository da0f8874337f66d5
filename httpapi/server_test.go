package httpapi

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/crypto/keywrap"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// A test API user.
var testCred = Credential{AccessKey: "AKTEST01", SecretKey: "test-secret-key", ProjectID: "proj01"}

// The content key of the test requests, and its bytes.
const (
	testKeyB64 = "MDEyMzQ1Njc4OWFiY2RlZg=="
	testKey    = "0123456789abcdef"
)

type env struct {
	t      testing.TB
	srv    *httptest.Server
	mgr    *control.Manager
	api    *Server
	root   string            // local store
	src    map[string][]byte // media/vod/* contents
	master *keywrap.Master
}

// newEnv serves a Manager over a local store holding a small clear HLS
// playlist (random segment bytes: planning reads sizes only).
func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	root := t.TempDir()
	e := &env{t: t, root: root, src: map[string][]byte{}}
	rnd := rand.New(rand.NewSource(1))
	for name, size := range map[string]int{"seg0.ts": 300000, "seg1.ts": 123457, "seg2.ts": 17} {
		b := make([]byte, size)
		rnd.Read(b)
		e.src[name] = b
	}
	e.src["index.m3u8"] = []byte("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n" +
		"#EXTINF:10.0,\nseg0.ts\n#EXTINF:4.0,\nseg1.ts\n#EXTINF:1.0,\nseg2.ts\n#EXT-X-ENDLIST\n")
	for name, b := range e.src {
		writeFile(t, filepath.Join(root, "media", "vod", name), b)
	}
	if err := os.MkdirAll(filepath.Join(root, "public"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	master, err := keywrap.LoadOrCreate(filepath.Join(t.TempDir(), "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	e.master = master
	e.mgr, err = control.NewManager(control.Config{Store: st, Region: "region1", SysBucket: ".mpcfs", Master: master,
		Log: log.New(io.Discard, "", 0), Tuning: noRefresh()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.mgr.Close)
	cfg.Manager = e.mgr
	if cfg.Credentials == nil {
		cfg.Credentials = Credentials{testCred.AccessKey: testCred}
	}
	e.api = New(cfg)
	e.srv = httptest.NewServer(e.api)
	t.Cleanup(e.srv.Close)
	return e
}

func writeFile(t testing.TB, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func createBody(out string) string {
	return fmt.Sprintf(`{"input":{"bucket":"media","location":"region1","object":"vod/index.m3u8"},
 "output":{"bucket":"public","location":"region1","object":%q},
 "encryption":{"hls_encrypt":{"key":%q,"url":"https://keys.example/k1","iv":%q,"algorithm":"AES-128-CBC"}},"user_data":"u"}`, out, testKeyB64, testKeyB64)
}

// sign signs with the exported Sign: the server's own canonical request
// (interoperability with the SDK is TestVerifySDKVectors' and the Node
// test's business; this signs the requests that test everything else).
func sign(r *http.Request, body []byte, c Credential, date time.Time) {
	r.Header.Del("Authorization")
	Sign(r, body, c, date)
}

type reply struct {
	code int
	hdr  http.Header
	body []byte
}

func (r reply) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
}

func (e *env) do(r *http.Request) reply {
	e.t.Helper()
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		e.t.Errorf("%s %s: no X-Request-Id", r.Method, r.URL)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// call sends a signed API request.
func (e *env) call(method, query, body string, edit ...func(*http.Request)) reply {
	e.t.Helper()
	r, err := http.NewRequest(method, e.srv.URL+"/v1/"+testCred.ProjectID+"/encryptions"+query, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	sign(r, []byte(body), testCred, time.Now())
	for _, f := range edit {
		f(r)
	}
	return e.do(r)
}

func (e *env) create(out string) string {
	e.t.Helper()
	rp := e.call("POST", "", createBody(out))
	var res struct {
		TaskID string `json:"task_id"`
	}
	rp.json(e.t, &res)
	if rp.code != http.StatusAccepted || res.TaskID == "" {
		e.t.Fatalf("create: %d %s", rp.code, rp.body)
	}
	return res.TaskID
}

func (e *env) waitStatus(id string, want control.Status) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for e.mgr.Status(id) != want {
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s is %s, want %s", id, e.mgr.Status(id), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) taskCount() int { return len(e.mgr.TaskIDs()) }

func TestCreateQueryCancel(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.create("out")
	e.waitStatus(id, control.Succeeded)

	var q queryResponse
	rp := e.call("GET", "?task_id="+id, "")
	rp.json(t, &q)
	if rp.code != 200 || q.Total != 1 || len(q.TaskArray) != 1 || q.TaskArray[0].TaskID != id || q.TaskArray[0].Status != control.Succeeded {
		t.Fatalf("query by id: %d %s", rp.code, rp.body)
	}
	if bytes.Contains(rp.body, []byte(testKeyB64)) || bytes.Contains(rp.body, []byte(testKey)) {
		t.Fatalf("the query shows the key: %s", rp.body)
	}
	if rp.hdr.Get("Content-Type") != "application/json;charset=UTF-8" {
		t.Errorf("Content-Type %q", rp.hdr.Get("Content-Type"))
	}

	if rp = e.call("DELETE", "?task_id="+id, ""); rp.code != http.StatusNoContent || len(rp.body) != 0 {
		t.Fatalf("cancel: %d %s", rp.code, rp.body)
	}
	if e.mgr.Status(id) != control.Canceled {
		t.Fatalf("status after cancel: %s", e.mgr.Status(id))
	}
	var apiErr control.APIError
	rp = e.call("DELETE", "?task_id="+id, "")
	rp.json(t, &apiErr)
	if rp.code != 400 || apiErr.Code != control.CodeOperationFailed {
		t.Fatalf("cancel twice: %d %s", rp.code, rp.body)
	}
	rp = e.call("DELETE", "?task_id=1234567890123456", "")
	rp.json(t, &apiErr)
	if rp.code != 400 || apiErr.Code != control.CodeTaskNotExist {
		t.Fatalf("cancel unknown: %d %s", rp.code, rp.body)
	}
}

func TestQueryFiltersAndPages(t *testing.T) {
	e := newEnv(t, Config{})
	var ids []string
	for i := 0; i < 13; i++ {
		ids = append(ids, e.create(fmt.Sprintf("out%d", i)))
	}
	for _, id := range ids {
		e.waitStatus(id, control.Succeeded)
	}
	for _, id := range ids[:3] {
		if rp := e.call("DELETE", "?task_id="+id, ""); rp.code != 204 {
			t.Fatalf("cancel: %d %s", rp.code, rp.body)
		}
	}
	query := func(qs string) queryResponse {
		t.Helper()
		var q queryResponse
		rp := e.call("GET", qs, "")
		if rp.code != 200 {
			t.Fatalf("GET %s: %d %s", qs, rp.code, rp.body)
		}
		rp.json(t, &q)
		return q
	}
	// Default page size 10, newest first, truncated.
	q := query("")
	if q.Total != 13 || len(q.TaskArray) != 10 || q.IsTruncated != 1 || q.TaskArray[0].TaskID != ids[12] {
		t.Fatalf("first page: total %d, %d tasks, truncated %d", q.Total, len(q.TaskArray), q.IsTruncated)
	}
	seen := map[string]bool{}
	for page := 0; ; page++ {
		q = query(fmt.Sprintf("?page=%d&size=4", page))
		for _, v := range q.TaskArray {
			if seen[v.TaskID] {
				t.Fatalf("task %s on two pages", v.TaskID)
			}
			seen[v.TaskID] = true
		}
		if q.IsTruncated == 0 {
			if page != 3 || len(q.TaskArray) != 1 {
				t.Fatalf("last page %d has %d tasks", page, len(q.TaskArray))
			}
			break
		}
	}
	if len(seen) != 13 {
		t.Fatalf("pages held %d tasks", len(seen))
	}
	if q = query("?page=9"); len(q.TaskArray) != 0 || q.Total != 13 || q.IsTruncated != 0 || q.TaskArray == nil {
		t.Fatalf("past the end: %+v", q)
	}
	if q = query("?status=CANCELED"); q.Total != 3 {
		t.Fatalf("status=CANCELED: total %d", q.Total)
	}
	if q = query("?status=SUCCEEDED&size=100"); q.Total != 10 || len(q.TaskArray) != 10 || q.IsTruncated != 0 {
		t.Fatalf("status=SUCCEEDED: %d/%d", len(q.TaskArray), q.Total)
	}
	if q = query("?task_id=" + strings.Join(ids[:10], ",")); q.Total != 10 {
		t.Fatalf("10 ids: total %d", q.Total)
	}
	if q = query("?task_id=" + ids[0] + "," + ids[1] + "&status=CANCELED"); q.Total != 2 {
		t.Fatalf("ids and status: total %d", q.Total)
	}
	now := time.Now().UTC()
	past, future := now.Add(-time.Hour).Format("20060102150405"), now.Add(time.Hour).Format("20060102150405")
	if q = query("?start_time=" + past + "&end_time=" + future); q.Total != 13 {
		t.Fatalf("time window: total %d", q.Total)
	}
	if q = query("?start_time=" + future); q.Total != 0 {
		t.Fatalf("start_time in the future: total %d", q.Total)
	}
	if q = query("?end_time=" + past); q.Total != 0 {
		t.Fatalf("end_time in the past: total %d", q.Total)
	}
	for _, bad := range []string{"?task_id=" + strings.Join(ids[:11], ","), "?status=DONE", "?size=0", "?size=101",
		"?page=-1", "?start_time=2026", "?end_time=20261301000000", "?tasks=1", "?size=1&size=2", "?task_id=12a",
		"?start_time=20261202000000&end_time=20261201000000"} {
		var apiErr control.APIError
		rp := e.call("GET", bad, "")
		rp.json(t, &apiErr)
		if rp.code != 400 || apiErr.Code != control.CodeBadRequest || apiErr.Msg == "" {
			t.Errorf("GET %s: %d %s", bad, rp.code, rp.body)
		}
	}
}

func TestAuthFailuresCreateNothing(t *testing.T) {
	e := newEnv(t, Config{})
	body := createBody("out")
	for _, c := range []struct {
		name string
		edit func(*http.Request)
	}{
		{"no signature", func(r *http.Request) { r.Header.Del("Authorization") }},
		{"tampered signature", func(r *http.Request) {
			a := r.Header.Get("Authorization")
			last := a[len(a)-1]
			r.Header.Set("Authorization", a[:len(a)-1]+map[bool]string{true: "0", false: "1"}[last != '0'])
		}},
		{"wrong secret", func(r *http.Request) {
			sign(r, []byte(body), Credential{AccessKey: testCred.AccessKey, SecretKey: "guess"}, time.Now())
		}},
		{"replayed 20 minutes later", func(r *http.Request) { sign(r, []byte(body), testCred, time.Now().Add(-20*time.Minute)) }},
		{"tampered body", func(r *http.Request) {
			nb := strings.Replace(body, `"out"`, `"elsewhere"`, 1)
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader(nb)), int64(len(nb))
		}},
		{"other project", func(r *http.Request) {
			r.URL.Path = "/v1/otherproject/encryptions"
			sign(r, []byte(body), testCred, time.Now())
		}},
	} {
		var apiErr control.APIError
		rp := e.call("POST", "", body, c.edit)
		rp.json(t, &apiErr)
		if rp.code != http.StatusUnauthorized || apiErr.Code != codeAuth || apiErr.Msg == "" {
			t.Errorf("%s: %d %s", c.name, rp.code, rp.body)
		}
		if strings.Contains(string(rp.body), testCred.SecretKey) {
			t.Errorf("%s: the reply shows the secret", c.name)
		}
	}
	if n := e.taskCount(); n != 0 {
		t.Fatalf("%d tasks created by unauthenticated requests", n)
	}
	// Negative control: the same request, signed right, creates one.
	e.create("out")
	if n := e.taskCount(); n != 1 {
		t.Fatalf("%d tasks after a good create", n)
	}
}

func TestHostileBodies(t *testing.T) {
	e := newEnv(t, Config{})
	good := createBody("out")
	for _, c := range []struct {
		name, body, ctype, want string
	}{
		{"not JSON", `{"input":`, "application/json", "JSON"},
		{"unknown field", strings.Replace(good, `"user_data"`, `"usr_data"`, 1), "application/json", "usr_data"},
		{"wrong type", strings.Replace(good, `"user_data":"u"`, `"user_data":7`, 1), "application/json", "user_data"},
		{"empty", ``, "application/json", "empty"},
		{"array", `[1,2]`, "application/json", ""},
		{"trailing data", good + `{}`, "application/json", ""},
		{"oversized", `{"user_data":"` + strings.Repeat("a", control.MaxRequestSize) + `"}`, "application/json", "larger than"},
		{"wrong content type", good, "text/plain", "Content-Type"},
		{"form content type", good, "application/x-www-form-urlencoded", "Content-Type"},
		{"no content type", good, "", "Content-Type"},
		{"bad key", strings.Replace(good, testKeyB64, "c2hvcnQ=", 1), "application/json", "key"},
		{"missing input", strings.Replace(good, "vod/index.m3u8", "vod/nothing.m3u8", 1), "application/json", "input.object"},
		{"wrong region", strings.Replace(good, `"location":"region1"`, `"location":"region9"`, 1), "application/json", "location"},
	} {
		r, _ := http.NewRequest("POST", e.srv.URL+"/v1/"+testCred.ProjectID+"/encryptions", strings.NewReader(c.body))
		if c.ctype != "" {
			r.Header.Set("Content-Type", c.ctype)
		}
		sign(r, []byte(c.body), testCred, time.Now())
		rp := e.do(r)
		var apiErr control.APIError
		rp.json(t, &apiErr)
		if rp.code != 400 || !strings.HasPrefix(apiErr.Code, "MPC.") || !strings.Contains(apiErr.Msg, c.want) {
			t.Errorf("%s: %d %s", c.name, rp.code, rp.body)
		}
		if strings.Contains(string(rp.body), testKeyB64) {
			t.Errorf("%s: the error shows the key", c.name)
		}
	}
	if n := e.taskCount(); n != 0 {
		t.Fatalf("%d tasks created by bad requests", n)
	}
	// Wrong method and paths.
	for _, c := range []struct{ method, path string }{{"PUT", "/v1/proj01/encryptions"}, {"GET", "/v1/proj01/other"}, {"GET", "/v2/x"}, {"GET", "/"}} {
		r, _ := http.NewRequest(c.method, e.srv.URL+c.path, nil)
		if rp := e.do(r); rp.code != 405 && rp.code != 404 {
			t.Errorf("%s %s: %d", c.method, c.path, rp.code)
		}
	}
}

func TestFailedSignaturesAreThrottled(t *testing.T) {
	e := newEnv(t, Config{})
	bad := func(r *http.Request) {
		sign(r, nil, Credential{AccessKey: testCred.AccessKey, SecretKey: "guess"}, time.Now())
	}
	for i := 0; i < failBurst; i++ {
		if rp := e.call("GET", "", "", bad); rp.code != 401 {
			t.Fatalf("failure %d: %d", i, rp.code)
		}
	}
	rp := e.call("GET", "", "", bad)
	if rp.code != http.StatusTooManyRequests || rp.hdr.Get("Retry-After") == "" {
		t.Fatalf("after %d failures: %d %s", failBurst, rp.code, rp.body)
	}
	// Even a good signature waits: the address is throttled, not the key.
	if rp = e.call("GET", "", ""); rp.code != http.StatusTooManyRequests {
		t.Fatalf("good request while throttled: %d", rp.code)
	}
}

// cbc encrypts like openssl enc -aes-128-cbc (PKCS#7).
func cbc(key, iv, plain []byte) []byte {
	b, _ := aes.NewCipher(key)
	pad := 16 - len(plain)%16
	p := append(append([]byte(nil), plain...), bytes.Repeat([]byte{byte(pad)}, pad)...)
	out := make([]byte, len(p))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, p)
	return out
}

func (e *env) get(path string, hdr ...string) reply {
	e.t.Helper()
	return e.method("GET", path, hdr...)
}

func (e *env) method(method, path string, hdr ...string) reply {
	e.t.Helper()
	r, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return e.do(r)
}

func TestOrigin(t *testing.T) {
	e := newEnv(t, Config{CORSOrigins: []string{"https://player.example"}})
	id := e.create("out")
	e.waitStatus(id, control.Succeeded)
	want := cbc([]byte(testKey), []byte(testKey), e.src["seg0.ts"])

	rp := e.get("/buckets/public/out/seg0.ts")
	if rp.code != 200 || !bytes.Equal(rp.body, want) {
		t.Fatalf("GET seg0.ts: %d, %d bytes, equal %v", rp.code, len(rp.body), bytes.Equal(rp.body, want))
	}
	etag, mod := rp.hdr.Get("ETag"), rp.hdr.Get("Last-Modified")
	if etag == "" || mod == "" || rp.hdr.Get("Content-Type") != "video/mp2t" || rp.hdr.Get("Accept-Ranges") != "bytes" ||
		!strings.Contains(rp.hdr.Get("Cache-Control"), "max-age=60") {
		t.Fatalf("headers: %v", rp.hdr)
	}
	pl := e.get("/buckets/public/out/index.m3u8")
	if pl.code != 200 || pl.hdr.Get("Content-Type") != "application/vnd.apple.mpegurl" || !bytes.Contains(pl.body, []byte("#EXT-X-KEY:METHOD=AES-128")) {
		t.Fatalf("playlist: %d %q %s", pl.code, pl.hdr.Get("Content-Type"), pl.body)
	}

	// Ranges.
	for _, c := range []struct {
		rng        string
		start, end int // end exclusive
	}{{"bytes=0-0", 0, 1}, {"bytes=1000-2999", 1000, 3000}, {"bytes=299990-", 299990, len(want)},
		{"bytes=-100", len(want) - 100, len(want)}, {"bytes=5-99999999", 5, len(want)}, {"bytes=-99999999", 0, len(want)}} {
		rp := e.get("/buckets/public/out/seg0.ts", "Range", c.rng)
		cr := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end-1, len(want))
		if rp.code != 206 || !bytes.Equal(rp.body, want[c.start:c.end]) || rp.hdr.Get("Content-Range") != cr {
			t.Errorf("Range %s: %d %q, %d bytes", c.rng, rp.code, rp.hdr.Get("Content-Range"), len(rp.body))
		}
	}
	for _, rng := range []string{"bytes=300016-", "bytes=999999-1000000", "bytes=-0"} {
		if rp := e.get("/buckets/public/out/seg0.ts", "Range", rng); rp.code != 416 || rp.hdr.Get("Content-Range") != fmt.Sprintf("bytes */%d", len(want)) {
			t.Errorf("Range %s: %d %q", rng, rp.code, rp.hdr.Get("Content-Range"))
		}
	}
	for _, rng := range []string{"bytes=0-1,5-6", "items=0-1", "bytes=9-3", "bytes=x-"} { // ignored: whole file
		if rp := e.get("/buckets/public/out/seg0.ts", "Range", rng); rp.code != 200 || !bytes.Equal(rp.body, want) {
			t.Errorf("Range %s: %d", rng, rp.code)
		}
	}

	// Conditional requests.
	if rp := e.get("/buckets/public/out/seg0.ts", "If-None-Match", etag); rp.code != 304 || len(rp.body) != 0 || rp.hdr.Get("ETag") != etag {
		t.Errorf("If-None-Match same: %d", rp.code)
	}
	if rp := e.get("/buckets/public/out/seg0.ts", "If-None-Match", `"other", W/`+etag); rp.code != 304 {
		t.Errorf("If-None-Match weak in a list: %d", rp.code)
	}
	if rp := e.get("/buckets/public/out/seg0.ts", "If-None-Match", `"other"`); rp.code != 200 {
		t.Errorf("If-None-Match other: %d", rp.code)
	}
	if rp := e.get("/buckets/public/out/seg0.ts", "If-Modified-Since", mod); rp.code != 304 {
		t.Errorf("If-Modified-Since same: %d", rp.code)
	}
	if rp := e.get("/buckets/public/out/seg0.ts", "Range", "bytes=10-19", "If-Range", etag); rp.code != 206 || !bytes.Equal(rp.body, want[10:20]) {
		t.Errorf("If-Range same etag: %d", rp.code)
	}
	if rp := e.get("/buckets/public/out/seg0.ts", "Range", "bytes=10-19", "If-Range", `"stale"`); rp.code != 200 || !bytes.Equal(rp.body, want) {
		t.Errorf("If-Range stale etag: %d", rp.code)
	}
	if rp := e.get("/buckets/public/out/seg0.ts", "Range", "bytes=10-19", "If-Range", mod); rp.code != 206 {
		t.Errorf("If-Range same date: %d", rp.code)
	}
	if rp := e.get("/buckets/public/out/seg0.ts", "If-Match", `"stale"`); rp.code != 412 {
		t.Errorf("If-Match stale: %d", rp.code)
	}

	// HEAD: headers only.
	if rp := e.method("HEAD", "/buckets/public/out/seg1.ts"); rp.code != 200 || len(rp.body) != 0 ||
		rp.hdr.Get("Content-Length") != fmt.Sprint(len(cbc([]byte(testKey), []byte(testKey), e.src["seg1.ts"]))) {
		t.Errorf("HEAD: %d, length %q", rp.code, rp.hdr.Get("Content-Length"))
	}

	// CORS.
	rp = e.get("/buckets/public/out/seg2.ts", "Origin", "https://player.example")
	if rp.hdr.Get("Access-Control-Allow-Origin") != "https://player.example" || !strings.Contains(rp.hdr.Get("Access-Control-Expose-Headers"), "Content-Range") {
		t.Errorf("CORS GET: %v", rp.hdr)
	}
	if rp = e.get("/buckets/public/out/seg2.ts", "Origin", "https://evil.example"); rp.hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS allows another origin")
	}
	rp = e.method("OPTIONS", "/buckets/public/out/seg2.ts", "Origin", "https://player.example", "Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "range")
	if rp.code != 204 || rp.hdr.Get("Access-Control-Allow-Origin") != "https://player.example" || !strings.Contains(rp.hdr.Get("Access-Control-Allow-Headers"), "Range") {
		t.Errorf("preflight: %d %v", rp.code, rp.hdr)
	}
	if rp = e.method("OPTIONS", "/buckets/public/out/seg2.ts", "Origin", "https://player.example", "Access-Control-Request-Method", "DELETE"); rp.hdr.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("preflight allows DELETE")
	}

	// Sources and anything not an output: 404, whatever the spelling.
	for _, p := range []string{"/buckets/media/vod/seg0.ts", "/buckets/media/vod/index.m3u8", "/buckets/public/out/../../media/vod/seg0.ts",
		"/buckets/public/out/%2e%2e/%2e%2e/media/vod/seg0.ts", "/buckets/public/out%2fseg0.ts", "/buckets/public%2Fout/seg0.ts",
		"/buckets/public/./out/seg0.ts", "/buckets/public//out/seg0.ts", "/buckets/public/out/seg0.ts/", "/buckets/public/out",
		"/buckets/.mpcfs/tasks/" + id + ".json", "/buckets/public/out/seg0.ts%00", "/buckets/public/out\\seg0.ts", "/buckets/", "/buckets/public"} {
		r, err := http.NewRequest("GET", e.srv.URL+"/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.URL.Opaque = p // sent as written: no client-side cleaning
		if rp := e.do(r); rp.code != 404 {
			t.Errorf("GET %s: %d", p, rp.code)
		}
	}
	// Negative control: the paths above are sent as written.
	r, _ := http.NewRequest("GET", e.srv.URL+"/x", nil)
	r.URL.Opaque = "/buckets/public/out/seg2.ts"
	if rp := e.do(r); rp.code != 200 {
		t.Fatalf("opaque path GET: %d", rp.code)
	}
	if rp := e.method("POST", "/buckets/public/out/seg0.ts"); rp.code != 405 {
		t.Errorf("POST to the origin: %d", rp.code)
	}

	// A canceled task's outputs are gone.
	if rp := e.call("DELETE", "?task_id="+id, ""); rp.code != 204 {
		t.Fatal(rp.code)
	}
	if rp := e.get("/buckets/public/out/seg0.ts"); rp.code != 404 {
		t.Errorf("canceled output: %d", rp.code)
	}
}

func TestMetricsAndHealth(t *testing.T) {
	e := newEnv(t, Config{})
	if rp := e.get("/healthz"); rp.code != 200 || string(rp.body) != "ok\n" {
		t.Fatalf("healthz: %d %q", rp.code, rp.body)
	}
	e.call("GET", "", "", func(r *http.Request) { r.Header.Del("Authorization") })
	rp := e.get("/metrics")
	if rp.code != 200 {
		t.Fatalf("metrics: %d", rp.code)
	}
	for _, want := range []string{`mpcfs_http_requests_total{code="200",method="GET",route="healthz"}`, `mpcfs_api_auth_failures_total{reason="missing"}`, "go_goroutines"} {
		if !bytes.Contains(rp.body, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if bytes.Contains(rp.body, []byte(testCred.SecretKey)) || bytes.Contains(rp.body, []byte(testCred.AccessKey)) {
		t.Errorf("metrics show a credential")
	}
}

// noRefresh is the default tuning without re-reading the task store.
func noRefresh() tuning.Tuning {
	t := tuning.Default()
	t.Refresh = -1
	return t
}

// A source changed after its task ran: its output is never made from the
// new bytes; the origin answers 502 without validators or freshness,
// while outputs that do not need it are still served.
func TestOriginSourceChanged(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.create("out")
	e.waitStatus(id, control.Succeeded)
	if rp := e.get("/buckets/public/out/seg1.ts", "Range", "bytes=0-15"); rp.code != 206 {
		t.Fatalf("before the change: %d", rp.code)
	}
	changed := append([]byte(nil), e.src["seg1.ts"]...)
	changed[0] ^= 1
	changed = append(changed, 'x') // a new size, so the store's ETag surely changes
	writeFile(t, filepath.Join(e.root, "media", "vod", "seg1.ts"), changed)
	rp := e.get("/buckets/public/out/seg1.ts")
	if rp.code != http.StatusBadGateway || rp.hdr.Get("ETag") != "" || rp.hdr.Get("Last-Modified") != "" || rp.hdr.Get("Cache-Control") != "no-store" {
		t.Fatalf("changed source: %d %v", rp.code, rp.hdr)
	}
	if rp := e.get("/buckets/public/out/seg0.ts"); rp.code != 200 || !bytes.Equal(rp.body, cbc([]byte(testKey), []byte(testKey), e.src["seg0.ts"])) {
		t.Fatalf("an untouched segment after another changed: %d", rp.code)
	}
}

// TestOriginStreamsBounded: past Tuning.OriginStreams segment responses at
// once, one more waits for a turn, for at most OriginQueueWait, and is then
// sent anyway, byte for byte; a turn given back lets the next go at once.
// Playlists never wait.
func TestOriginStreamsBounded(t *testing.T) {
	e := newEnv(t, Config{})
	if got, want := cap(e.api.streams), tuning.Default().OriginStreams; got != want {
		t.Fatalf("the origin streams %d segments at once, the tuning says %d", got, want)
	}
	const wait = 400 * time.Millisecond
	e.api.streams, e.api.qwait = make(chan struct{}, 1), wait
	id := e.create("out")
	e.waitStatus(id, control.Succeeded)
	want := cbc([]byte(testKey), []byte(testKey), e.src["seg0.ts"])
	timedGet := func(path string) (reply, time.Duration) {
		start := time.Now()
		rp := e.get(path)
		return rp, time.Since(start)
	}

	done := e.api.admit(context.Background()) // every turn taken
	rp, took := timedGet("/buckets/public/out/seg0.ts")
	if rp.code != 200 || !bytes.Equal(rp.body, want) {
		t.Fatalf("GET past the bound: %d, %d bytes, equal %v", rp.code, len(rp.body), bytes.Equal(rp.body, want))
	}
	if took < wait {
		t.Fatalf("GET with every turn taken took %v: it did not wait its turn (%v)", took, wait)
	}
	if rp, took := timedGet("/buckets/public/out/index.m3u8"); rp.code != 200 || took >= wait {
		t.Fatalf("playlist GET with every turn taken: %d in %v; playlists must not wait", rp.code, took)
	}
	go func() {
		time.Sleep(wait / 4)
		done()
	}()
	if rp, took := timedGet("/buckets/public/out/seg0.ts"); rp.code != 200 || !bytes.Equal(rp.body, want) || took >= wait {
		t.Fatalf("GET when a turn was given back: %d in %v, want it sent without waiting the whole %v", rp.code, took, wait)
	}
	if len(e.api.streams) != 0 {
		t.Fatalf("%d turns still taken after every response", len(e.api.streams))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	hold := e.api.admit(context.Background())
	defer hold()
	start := time.Now()
	e.api.admit(ctx)()
	if d := time.Since(start); d >= wait {
		t.Fatalf("a request whose client went away waited %v for a turn", d)
	}
}

// downSysStore fails every read of the task store's objects while down
// is set, as a store that stopped answering.
type downSysStore struct {
	store.Store
	down atomic.Bool // read by GETs that may outlive a request (speculative ones)
}

func (s *downSysStore) Open(ctx context.Context, bucket, key string, off, n int64) (io.ReadCloser, error) {
	if s.down.Load() && bucket == ".mpcfs" {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, store.ErrUnavailable)
	}
	return s.Store.Open(ctx, bucket, key, off, n)
}

// TestOriginStoreDownIsNot404: on a server that has not loaded the task
// of an output (its file list comes from the task store), a store that
// does not answer gives 503, not 404: the output may well exist. The
// control is the same server once the store answers: 200.
func TestOriginStoreDownIsNot404(t *testing.T) {
	e := newEnv(t, Config{})
	id := e.create("out")
	e.waitStatus(id, control.Succeeded)
	st, err := store.NewLocal(e.root)
	if err != nil {
		t.Fatal(err)
	}
	down := &downSysStore{Store: st}
	m, err := control.NewManager(control.Config{Store: down, Region: "region1", SysBucket: ".mpcfs", Master: e.master,
		Log: log.New(io.Discard, "", 0), Tuning: noRefresh()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	srv := httptest.NewServer(New(Config{Manager: m, Credentials: Credentials{testCred.AccessKey: testCred}}))
	defer srv.Close()
	get := func() int {
		resp, err := http.Get(srv.URL + "/buckets/public/out/seg0.ts")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	down.down.Store(true)
	if code := get(); code != http.StatusServiceUnavailable {
		t.Errorf("GET of an output while the task store is down: %d, want 503", code)
	}
	down.down.Store(false)
	if code := get(); code != http.StatusOK {
		t.Errorf("GET of the same output once the store answers: %d, want 200", code)
	}
}
