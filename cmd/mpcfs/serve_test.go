package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/httpapi"
	"github.com/mpcfs/mpcfs/internal/sample"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// need and haveCmd are the one rule for missing tools (internal/testutil).
var need = testutil.Need

var haveCmd = testutil.HaveCmd

// sdkDir holds the Node test driver and its npm packages (make sdkdeps).
func sdkDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "test", "sdk"))
	if err != nil {
		t.Fatal(err)
	}
	need(t, "node (apt-get install nodejs)", haveCmd("node"))
	_, err = os.Stat(filepath.Join(dir, "node_modules", "@huaweicloud", "huaweicloud-sdk-core", "auth", "AKSKSigner.js"))
	need(t, "the Huawei Cloud Node SDK (make sdkdeps: npm ci in test/sdk)", err == nil)
	return dir
}

// buildMpcfs builds this command into a temporary folder.
func buildMpcfs(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mpcfs")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// daemon is a running `mpcfs serve` (or mount --listen) process.
type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
	done chan struct{}
}

// syncBuffer is a log sink safe for concurrent writers (internal/testutil).
type syncBuffer = testutil.SyncBuffer

func startDaemon(t *testing.T, bin string, env []string, args ...string) *daemon {
	t.Helper()
	d := &daemon{t: t, log: &syncBuffer{}, done: make(chan struct{})}
	for i, a := range args {
		if a == "--listen" {
			d.addr = args[i+1]
		}
	}
	d.cmd = exec.Command(bin, args...)
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("mpcfs log:\n%s", d.log)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + d.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return d
			}
		}
		select {
		case <-d.done:
			t.Fatalf("mpcfs exited: %s", d.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mpcfs not serving after 60 s: %s", d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits (bounded) for the process to end.
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("mpcfs did not stop within 30 s of SIGTERM")
	}
}

// sdkResult is one operation's outcome as the Node SDK saw it.
type sdkResult struct {
	Status    int             `json:"status"`
	Body      json.RawMessage `json:"body"`
	RequestID string          `json:"request_id"`
	Error     string          `json:"error"`
}

type sdkClient struct {
	t               *testing.T
	dir, endpoint   string
	ak, sk, project string
}

// run sends ops through Huawei Cloud's Node SDK core (test/sdk/mpc.js).
func (c *sdkClient) run(ops ...map[string]any) []sdkResult {
	c.t.Helper()
	plan, _ := json.Marshal(map[string]any{"endpoint": c.endpoint, "ak": c.ak, "sk": c.sk, "project_id": c.project, "ops": ops})
	cmd := exec.Command("node", "mpc.js")
	cmd.Dir = c.dir
	cmd.Stdin = bytes.NewReader(plan)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("node mpc.js: %v\n%s", err, stderr.String())
	}
	// The SDK logs failures on its own: the result is the last line.
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res []sdkResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		c.t.Fatalf("node mpc.js output %q: %v", out, err)
	}
	for i, r := range res {
		if r.Status == 0 {
			c.t.Fatalf("op %d did not reach the server: %s", i, r.Error)
		}
	}
	return res
}

type taskView struct {
	TaskID     string `json:"task_id"`
	Status     string `json:"status"`
	CreateTime string `json:"create_time"`
	UserData   string `json:"user_data"`
}

type queryBody struct {
	TaskArray   []taskView `json:"task_array"`
	Total       int        `json:"total"`
	IsTruncated int        `json:"is_truncated"`
}

func (c *sdkClient) query(q map[string]any) queryBody {
	c.t.Helper()
	r := c.run(map[string]any{"op": "query", "query": q})[0]
	var b queryBody
	if r.Status != 200 || json.Unmarshal(r.Body, &b) != nil {
		c.t.Fatalf("query %v: %d %s", q, r.Status, r.Body)
	}
	return b
}

// waitTotal polls (through the SDK) until the query's total is want.
func (c *sdkClient) waitTotal(q map[string]any, want int) queryBody {
	c.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		b := c.query(q)
		if b.Total == want {
			return b
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("query %v: total %d, want %d", q, b.Total, want)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// The vendor's example create request ("Creating an Encryption Task"):
// AES-128-CBC hls_encrypt plus multidrm HLS/PLAYREADY with emi 16420, on
// TS input (so the whole-segment CBC output is made). Only input.object
// names our sample; the key is the example's.
const vendorKey = "cXdlcnR5dWlvcGFzZGZnaA==" // base64 of "qwertyuiopasdfgh"

func vendorRequest(outObject string) map[string]any {
	return map[string]any{
		"input":  map[string]any{"bucket": "mpc-east-2", "location": "cn-east-2", "object": "ok/master.m3u8"},
		"output": map[string]any{"bucket": "mpc-east-2", "location": "cn-east-2", "object": outObject},
		"encryption": map[string]any{
			"hls_encrypt": map[string]any{"key": vendorKey, "url": "www.xxxxx.com", "iv": "cXdlcnR5dWlvcGFzZGZnaA==", "algorithm": "AES-128-CBC"},
			"multidrm":    map[string]any{"content_id": "example_content_id", "streaming_mode": "HLS", "encrypt_audio": 0, "emi": 16420, "drm_list": []string{"PLAYREADY"}},
		},
		"user_data": "user_data",
	}
}

// TestServeSDK drives a real `mpcfs serve` over a real MinIO with
// Huawei Cloud's Node.js SDK core, and checks the origin with curl against
// openssl's encryption of the source.
func TestServeSDK(t *testing.T) {
	dir := sdkDir(t)
	for _, tool := range []string{"curl", "openssl", "ffmpeg"} {
		need(t, tool, haveCmd(tool))
	}
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "mpc-east-2")
	media := t.TempDir()
	lad, err := sample.MakeLadder(media, 6)
	if err != nil {
		t.Fatal(err)
	}
	sources := map[string][]byte{}
	filepath.Walk(media, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			rel, _ := filepath.Rel(media, p)
			b, _ := os.ReadFile(p)
			sources[filepath.ToSlash(rel)] = b
			srv.PutFile(t, "mpc-east-2", "ok/"+filepath.ToSlash(rel), b)
		}
		return nil
	})
	_ = lad

	bin := buildMpcfs(t)
	work := t.TempDir()
	creds := filepath.Join(work, "api-credentials")
	os.WriteFile(creds, []byte("# test user\nAK0SDKTEST:sdk-test-secret-key:0a1b2c3d4e5f\n"), 0o600)
	addr := freePort(t)
	env := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	args := []string{"serve", "--endpoint", srv.Endpoint, "--region", "cn-east-2", "--master-key-file", filepath.Join(work, "master.key"),
		"--listen", addr, "--api-credentials", creds, "--cors-origin", "https://player.example", "--refresh", "500ms"}
	d := startDaemon(t, bin, env, args...)
	c := &sdkClient{t: t, dir: dir, endpoint: "http://" + addr, ak: "AK0SDKTEST", sk: "sdk-test-secret-key", project: "0a1b2c3d4e5f"}

	// Create with the vendor's example body; a wrong secret and a body
	// with an unknown field create nothing.
	bad := vendorRequest("never")
	bad["inputt"] = bad["input"]
	res := c.run(
		map[string]any{"op": "create", "body": vendorRequest("output")},
		map[string]any{"op": "create", "body": vendorRequest("never"), "sk": "wrong-secret"},
		map[string]any{"op": "create", "body": vendorRequest("never"), "project_id": "otherproject"},
		map[string]any{"op": "create", "body": bad},
		map[string]any{"op": "create", "body": vendorRequest("never"), "headers": map[string]string{"X-Sdk-Date": time.Now().Add(-20 * time.Minute).UTC().Format("20060102T150405Z")}},
		map[string]any{"op": "query", "query": map[string]any{}, "headers": map[string]string{"X-Sdk-Date": time.Now().Add(-2 * time.Minute).UTC().Format("20060102T150405Z")}},
		map[string]any{"op": "query", "query": map[string]any{"status": "WAITING"}, "content_type": "text/plain"},
		map[string]any{"op": "create", "body": vendorRequest("never"), "content_type": "text/plain"},
	)
	var created struct {
		TaskID string `json:"task_id"`
	}
	if res[0].Status != 202 || json.Unmarshal(res[0].Body, &created) != nil || !regexp.MustCompile(`^\d{16}$`).MatchString(created.TaskID) {
		t.Fatalf("create: %d %s", res[0].Status, res[0].Body)
	}
	for i, want := range []struct {
		status int
		code   string
	}{{401, "APIGW.0301"}, {401, "APIGW.0301"}, {400, "MPC.10202"}, {401, "APIGW.0301"}, {200, ""},
		// Unsigned payload: fine without a body, refused with one.
		{200, ""}, {401, "APIGW.0301"}} {
		r := res[i+1]
		var e struct {
			Code string `json:"error_code"`
			Msg  string `json:"error_msg"`
		}
		json.Unmarshal(r.Body, &e)
		if r.Status != want.status || e.Code != want.code || (want.code != "" && (e.Msg == "" || r.RequestID == "")) {
			t.Errorf("op %d: %d %s (request id %q), want %d %s", i+1, r.Status, r.Body, r.RequestID, want.status, want.code)
		}
		if want.code == "MPC.10202" && !strings.Contains(e.Msg, "inputt") {
			t.Errorf("unknown field error does not name it: %s", e.Msg)
		}
	}
	id := created.TaskID

	// Query by id until it SUCCEEDED; the key is never shown.
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := c.run(map[string]any{"op": "query", "query": map[string]any{"task_id": id}})[0]
		var b queryBody
		json.Unmarshal(r.Body, &b)
		if bytes.Contains(r.Body, []byte(vendorKey)) || bytes.Contains(r.Body, []byte("qwertyuiopasdfgh")) {
			t.Fatalf("query shows the key: %s", r.Body)
		}
		if r.Status == 200 && b.Total == 1 && b.TaskArray[0].Status == "SUCCEEDED" {
			if b.TaskArray[0].TaskID != id || b.TaskArray[0].UserData != "user_data" {
				t.Fatalf("query by id: %s", r.Body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task not SUCCEEDED: %d %s\n%s", r.Status, r.Body, d.log)
		}
		time.Sleep(300 * time.Millisecond)
	}

	t.Run("origin", func(t *testing.T) { checkOrigin(t, addr, sources) })

	// 24 more tasks, then page through all 25.
	var ops []map[string]any
	for i := 1; i < 25; i++ {
		ops = append(ops, map[string]any{"op": "create", "body": vendorRequest(fmt.Sprintf("out%02d", i))})
	}
	ids := map[string]bool{id: true}
	for i, r := range c.run(ops...) {
		var cr struct {
			TaskID string `json:"task_id"`
		}
		if r.Status != 202 || json.Unmarshal(r.Body, &cr) != nil {
			t.Fatalf("create %d: %d %s", i, r.Status, r.Body)
		}
		ids[cr.TaskID] = true
	}
	c.waitTotal(map[string]any{"status": "SUCCEEDED"}, 25)
	paged := map[string]bool{}
	for page, want := range []struct{ n, trunc int }{{10, 1}, {10, 1}, {5, 0}} {
		b := c.query(map[string]any{"page": page, "size": 10})
		if len(b.TaskArray) != want.n || b.IsTruncated != want.trunc || b.Total != 25 {
			t.Fatalf("page %d: %d tasks, truncated %d, total %d", page, len(b.TaskArray), b.IsTruncated, b.Total)
		}
		for _, v := range b.TaskArray {
			paged[v.TaskID] = true
		}
	}
	if len(paged) != 25 {
		t.Fatalf("pages held %d distinct tasks", len(paged))
	}
	for tid := range ids {
		if !paged[tid] {
			t.Fatalf("task %s on no page", tid)
		}
	}
	// some[0] is the one to cancel: never the first task, whose
	// output the restart check below still serves.
	some := []string{}
	for tid := range ids {
		if tid != id {
			some = append(some, tid)
		}
	}
	sort.Strings(some)
	some = append(some, id)
	if b := c.query(map[string]any{"task_id": strings.Join(some[:10], ",")}); b.Total != 10 {
		t.Fatalf("10 ids: total %d", b.Total)
	}
	now := time.Now().UTC()
	if b := c.query(map[string]any{"start_time": now.Add(-time.Hour).Format("20060102150405"), "end_time": now.Add(time.Minute).Format("20060102150405")}); b.Total != 25 {
		t.Fatalf("time window: total %d", b.Total)
	}
	if b := c.query(map[string]any{"start_time": now.Add(time.Hour).Format("20060102150405")}); b.Total != 0 {
		t.Fatalf("start_time ahead: total %d", b.Total)
	}

	// Cancel; again is an error; unknown id is MPC.10211.
	res = c.run(
		map[string]any{"op": "cancel", "task_id": some[0]},
		map[string]any{"op": "cancel", "task_id": some[0]},
		map[string]any{"op": "cancel", "task_id": "1000000000000000"},
		map[string]any{"op": "query", "query": map[string]any{"task_id": strings.Join(some[:11], ",")}},
	)
	if res[0].Status != 204 {
		t.Fatalf("cancel: %d %s", res[0].Status, res[0].Body)
	}
	for i, code := range []string{"MPC.10212", "MPC.10211", "MPC.10202"} {
		if r := res[i+1]; r.Status != 400 || !bytes.Contains(r.Body, []byte(code)) {
			t.Errorf("op %d: %d %s, want 400 %s", i+1, r.Status, r.Body, code)
		}
	}
	if b := c.query(map[string]any{"status": "CANCELED"}); b.Total != 1 || b.TaskArray[0].TaskID != some[0] {
		t.Fatalf("status=CANCELED: %+v", b)
	}
	if b := c.query(map[string]any{}); b.Total != 25 {
		t.Fatalf("%d tasks in all, want 25 (refused creates made some?)", b.Total)
	}

	t.Run("curl-auth", func(t *testing.T) { checkCurlAuth(t, addr) })

	// ETag and Last-Modified survive a restart; SIGTERM lets a slow
	// download finish.
	seg := "/buckets/mpc-east-2/output/v0/seg000.ts"
	h1 := curlHeaders(t, "http://"+addr+seg)
	slow := exec.Command("curl", "-sS", "--fail", "--limit-rate", "100k", "-o", filepath.Join(work, "slow.ts"), "http://"+addr+seg)
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	d.stop()
	if err := slow.Wait(); err != nil {
		t.Fatalf("a download running at SIGTERM failed: %v", err)
	}
	got, _ := os.ReadFile(filepath.Join(work, "slow.ts"))
	if want := opensslCBC(t, sources["v0/seg000.ts"], "qwertyuiopasdfgh", "qwertyuiopasdfgh"); !bytes.Equal(got, want) {
		t.Fatalf("the download running at SIGTERM got %d bytes, want %d", len(got), len(want))
	}
	t.Logf("stopped %v after SIGTERM, the slow download done", time.Since(start).Round(time.Millisecond))
	d = startDaemon(t, bin, env, args...)
	c.waitTotal(map[string]any{"status": "SUCCEEDED"}, 24)
	h2 := curlHeaders(t, "http://"+addr+seg)
	for _, k := range []string{"etag", "last-modified", "content-length"} {
		if h1[k] == "" || h1[k] != h2[k] {
			t.Errorf("%s before restart %q, after %q", k, h1[k], h2[k])
		}
	}
}

// opensslCBC encrypts with `openssl enc -aes-128-cbc` (PKCS#7): the
// reference for the origin's bytes.
func opensslCBC(t *testing.T, plain []byte, key, iv string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", "enc", "-aes-128-cbc", "-K", hex.EncodeToString([]byte(key)), "-iv", hex.EncodeToString([]byte(iv)))
	cmd.Stdin = bytes.NewReader(plain)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl: %v", err)
	}
	return out
}

// curlGet runs curl and returns the status, headers (lower-case names) and body.
func curlGet(t *testing.T, args ...string) (int, map[string]string, []byte) {
	t.Helper()
	dir := t.TempDir()
	hdrFile, bodyFile := filepath.Join(dir, "h"), filepath.Join(dir, "b")
	cmd := exec.Command("curl", append([]string{"-sS", "--path-as-is", "-D", hdrFile, "-o", bodyFile}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl %v: %v %s", args, err, out)
	}
	raw, _ := os.ReadFile(hdrFile)
	body, _ := os.ReadFile(bodyFile)
	hdr := map[string]string{}
	status := 0
	for _, line := range strings.Split(string(raw), "\r\n") {
		if strings.HasPrefix(line, "HTTP/") {
			fmt.Sscanf(strings.Fields(line)[1], "%d", &status)
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			hdr[strings.ToLower(k)] = strings.TrimSpace(v)
		}
	}
	return status, hdr, body
}

func curlHeaders(t *testing.T, url string) map[string]string {
	t.Helper()
	st, h, _ := curlGet(t, "-I", url)
	if st != 200 {
		t.Fatalf("HEAD %s: %d", url, st)
	}
	return h
}

func checkOrigin(t *testing.T, addr string, sources map[string][]byte) {
	base := "http://" + addr + "/buckets/mpc-east-2/output/"
	st, h, body := curlGet(t, base+"master.m3u8")
	if st != 200 || h["content-type"] != "application/vnd.apple.mpegurl" || !bytes.Equal(body, sources["master.m3u8"]) {
		t.Fatalf("master.m3u8: %d %q (served byte for byte: %v)", st, h["content-type"], bytes.Equal(body, sources["master.m3u8"]))
	}
	st, _, body = curlGet(t, base+"v0/index.m3u8")
	if st != 200 || !bytes.Contains(body, []byte(`#EXT-X-KEY:METHOD=AES-128,URI="www.xxxxx.com",IV=0x71776572747975696f70617364666768`)) {
		t.Fatalf("variant: %d %s", st, body)
	}
	want := opensslCBC(t, sources["v0/seg001.ts"], "qwertyuiopasdfgh", "qwertyuiopasdfgh")
	url := base + "v0/seg001.ts"
	st, h, body = curlGet(t, url)
	if st != 200 || !bytes.Equal(body, want) || h["content-type"] != "video/mp2t" || h["x-request-id"] == "" {
		t.Fatalf("segment: %d %v, %d bytes, equal to openssl's %v", st, h, len(body), bytes.Equal(body, want))
	}
	etag, mod := h["etag"], h["last-modified"]
	n := len(want)
	for _, c := range []struct {
		rng      string
		from, to int
	}{
		{"0-0", 0, 1}, {"100-4195", 100, 4196}, {fmt.Sprintf("%d-", n-17), n - 17, n}, {"-1000", n - 1000, n}, {"16-", 16, n},
	} {
		st, h, body := curlGet(t, "-r", c.rng, url)
		if st != 206 || !bytes.Equal(body, want[c.from:c.to]) || h["content-range"] != fmt.Sprintf("bytes %d-%d/%d", c.from, c.to-1, n) {
			t.Errorf("range %s: %d %q, %d bytes, equal %v", c.rng, st, h["content-range"], len(body), bytes.Equal(body, want[c.from:c.to]))
		}
	}
	if st, h, _ := curlGet(t, "-r", fmt.Sprintf("%d-", n), url); st != 416 || h["content-range"] != fmt.Sprintf("bytes */%d", n) {
		t.Errorf("unsatisfiable range: %d %q", st, h["content-range"])
	}
	if st, _, body := curlGet(t, "-H", "If-None-Match: "+etag, url); st != 304 || len(body) != 0 {
		t.Errorf("If-None-Match: %d", st)
	}
	if st, _, _ := curlGet(t, "-H", "If-Modified-Since: "+mod, url); st != 304 {
		t.Errorf("If-Modified-Since: %d", st)
	}
	if st, _, body := curlGet(t, "-r", "32-63", "-H", "If-Range: "+etag, url); st != 206 || !bytes.Equal(body, want[32:64]) {
		t.Errorf("If-Range current: %d", st)
	}
	if st, _, body := curlGet(t, "-r", "32-63", "-H", `If-Range: "old"`, url); st != 200 || !bytes.Equal(body, want) {
		t.Errorf("If-Range stale: %d, %d bytes", st, len(body))
	}
	// CORS.
	if _, h, _ := curlGet(t, "-H", "Origin: https://player.example", url); h["access-control-allow-origin"] != "https://player.example" {
		t.Errorf("CORS: %v", h)
	}
	if st, h, _ := curlGet(t, "-X", "OPTIONS", "-H", "Origin: https://player.example", "-H", "Access-Control-Request-Method: GET", "-H", "Access-Control-Request-Headers: range", url); st != 204 || !strings.Contains(h["access-control-allow-headers"], "Range") {
		t.Errorf("preflight: %d %v", st, h)
	}
	// Sources, in the very bucket the outputs are in, never.
	for _, p := range []string{"/buckets/mpc-east-2/ok/master.m3u8", "/buckets/mpc-east-2/ok/v0/seg001.ts",
		"/buckets/mpc-east-2/output/../ok/v0/seg001.ts", "/buckets/mpc-east-2/output/%2e%2e/ok/v0/seg001.ts",
		"/buckets/mpc-east-2/output%2Fv0/seg001.ts", "/buckets/mpc-system/tasks/", "/buckets/mpc-east-2/output/v0/seg001.ts/"} {
		if st, _, body := curlGet(t, "http://"+addr+p); st != 404 || bytes.Equal(body, sources["v0/seg001.ts"]) {
			t.Errorf("GET %s: %d", p, st)
		}
	}
	if st, _, body := curlGet(t, "http://"+addr+"/metrics"); st != 200 || !bytes.Contains(body, []byte(`mpcfs_http_requests_total{code="206",method="GET",route="origin"}`)) {
		t.Errorf("metrics: %d", st)
	}
}

// checkCurlAuth sends unsigned, forged and hostile requests with curl.
func checkCurlAuth(t *testing.T, addr string) {
	api := "http://" + addr + "/v1/0a1b2c3d4e5f/encryptions"
	body, _ := json.Marshal(vendorRequest("curl"))
	date := time.Now().UTC().Format("20060102T150405Z")
	for name, args := range map[string][]string{
		"no signature": {"-X", "POST", "-H", "Content-Type: application/json", "--data-binary", string(body), api},
		"forged signature": {"-X", "POST", "-H", "Content-Type: application/json", "-H", "X-Sdk-Date: " + date,
			"-H", "Authorization: SDK-HMAC-SHA256 Access=AK0SDKTEST, SignedHeaders=content-type;host;x-sdk-date, Signature=" + strings.Repeat("ab", 32),
			"--data-binary", string(body), api},
		"query unsigned":  {api + "?status=SUCCEEDED"},
		"cancel unsigned": {"-X", "DELETE", api + "?task_id=1000000000000000"},
	} {
		st, h, b := curlGet(t, args...)
		if st != 401 || !bytes.Contains(b, []byte(`"error_code":"APIGW.0301"`)) || h["x-request-id"] == "" {
			t.Errorf("%s: %d %s", name, st, b)
		}
	}
	// An oversized body is refused (400, naming the cap) whatever else.
	big := filepath.Join(t.TempDir(), "big.json")
	os.WriteFile(big, bytes.Repeat([]byte("a"), 1<<20), 0o644)
	st, _, b := curlGet(t, "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@"+big, api)
	if st != 400 || !bytes.Contains(b, []byte("larger than")) {
		t.Errorf("1 MiB body: %d %s", st, b)
	}
}

// TestMountListen runs `mpcfs mount --listen`: one process, one Manager,
// so a task created over HTTP is in the mount's control/ at once, a task
// created through the mount is in the API's query, and the origin serves
// the bytes the mount shows.
func TestMountListen(t *testing.T) {
	_, err := os.Stat("/dev/fuse")
	need(t, "/dev/fuse", err == nil)
	need(t, "fusermount3 (apt-get install fuse3)", haveCmd("fusermount3"))
	bin := buildMpcfs(t)
	work := t.TempDir()
	storeDir, mnt := filepath.Join(work, "store"), filepath.Join(work, "mnt")
	seg := bytes.Repeat([]byte("0123456789abcdefXYZ"), 20000)
	for p, b := range map[string][]byte{
		"media/vod/index.m3u8": []byte("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nseg0.ts\n#EXT-X-ENDLIST\n"),
		"media/vod/seg0.ts":    seg,
		"public/.keep":         nil,
	} {
		os.MkdirAll(filepath.Dir(filepath.Join(storeDir, p)), 0o755)
		os.WriteFile(filepath.Join(storeDir, p), b, 0o644)
	}
	os.MkdirAll(mnt, 0o755)
	creds := filepath.Join(work, "creds")
	os.WriteFile(creds, []byte("AKM:mount-secret:projm\n"), 0o600)
	addr := freePort(t)
	d := startDaemon(t, bin, nil, "mount", "--store", storeDir, "--master-key-file", filepath.Join(work, "mk"),
		"--listen", addr, "--api-credentials", creds, mnt)
	t.Cleanup(func() { exec.Command("fusermount3", "-u", mnt).Run() })

	cred := httpapi.Credential{AccessKey: "AKM", SecretKey: "mount-secret", ProjectID: "projm"}
	call := func(method, query, body string) (int, []byte) {
		t.Helper()
		r, _ := http.NewRequest(method, "http://"+addr+"/v1/projm/encryptions"+query, strings.NewReader(body))
		if body != "" {
			r.Header.Set("Content-Type", "application/json")
		}
		httpapi.Sign(r, []byte(body), cred, time.Now())
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	req := `{"input":{"bucket":"media","location":"region1","object":"vod/index.m3u8"},
	  "output":{"bucket":"public","location":"region1","object":"%s"},
	  "encryption":{"hls_encrypt":{"key":"0123456789abcdef","url":"https://k/1","algorithm":"AES-128-CBC"}}}`
	st, b := call("POST", "", fmt.Sprintf(req, "viahttp"))
	var created struct {
		TaskID string `json:"task_id"`
	}
	if st != 202 || json.Unmarshal(b, &created) != nil {
		t.Fatalf("create over HTTP: %d %s", st, b)
	}
	// At once in the mount (same Manager: no refresh to wait for).
	if _, err := os.Stat(filepath.Join(mnt, "control", "tasks", created.TaskID+".json")); err != nil {
		t.Fatalf("task created over HTTP not in the mount: %v", err)
	}
	// A task created through the mount is in the API's query.
	if err := os.WriteFile(filepath.Join(mnt, "control", "encryptions", "viafuse.json"), []byte(fmt.Sprintf(req, "viafuse")), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, _ := os.ReadFile(filepath.Join(mnt, "control", "encryptions", "viafuse.json"))
	var viaFuse struct {
		TaskID string `json:"task_id"`
	}
	if json.Unmarshal(resp, &viaFuse) != nil || viaFuse.TaskID == "" {
		t.Fatalf("create through the mount: %s", resp)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, b = call("GET", "?status=SUCCEEDED", "")
		var q queryBody
		json.Unmarshal(b, &q)
		if st == 200 && q.Total == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("query: %d %s", st, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The origin serves what the mount shows.
	fromMount, err := os.ReadFile(filepath.Join(mnt, "buckets", "public", "viafuse", "seg0.ts"))
	if err != nil {
		t.Fatal(err)
	}
	st, _, fromHTTP := curlGet(t, "http://"+addr+"/buckets/public/viafuse/seg0.ts")
	if st != 200 || !bytes.Equal(fromHTTP, fromMount) || len(fromMount) != len(seg)+16-len(seg)%16 {
		t.Fatalf("origin %d, %d bytes; mount %d bytes", st, len(fromHTTP), len(fromMount))
	}
	// SIGTERM: HTTP stops, the mount is unmounted, the process ends.
	d.stop()
	if b, _ := os.ReadFile("/proc/self/mounts"); bytes.Contains(b, []byte(mnt)) {
		t.Fatalf("%s still mounted after SIGTERM", mnt)
	}
}

func TestServeFlags(t *testing.T) {
	c, err := parseServeFlags([]string{"--api-credentials", "f"})
	if err != nil || c.HTTP.Listen != defaultListen {
		t.Fatalf("default listen: %v %v", c, err)
	}
	if c, err = parseServeFlags([]string{"--listen", ":9999", "--api-credentials", "f"}); err != nil || c.HTTP.Listen != "127.0.0.1:9999" {
		t.Fatalf(":9999 -> %v, %v; want loopback", c.HTTP.Listen, err)
	}
	for _, args := range [][]string{{}, {"--listen", ":1"}, {"--listen", "", "--api-credentials", "f"}, {"--api-credentials", "f", "extra"}} {
		if _, err := parseServeFlags(args); err == nil {
			t.Errorf("serve %q accepted", args)
		}
	}
	if _, err := parseMountFlags([]string{"--listen", ":1", "mnt"}); err == nil || !strings.Contains(err.Error(), "--api-credentials") {
		t.Errorf("mount --listen without credentials: %v", err)
	}
	if c, err := parseMountFlags([]string{"mnt"}); err != nil || c.HTTP.Listen != "" {
		t.Errorf("plain mount: %v %v", c, err)
	}
}

// A credentials file others can read stops serve before it listens.
func TestServeRefusesOpenCredentials(t *testing.T) {
	bin := buildMpcfs(t)
	work := t.TempDir()
	creds := filepath.Join(work, "creds")
	os.WriteFile(creds, []byte("AK:secret-not-shown:p\n"), 0o644)
	os.Chmod(creds, 0o644)
	out, err := exec.Command(bin, "serve", "--store", filepath.Join(work, "store"), "--master-key-file", filepath.Join(work, "mk"),
		"--listen", freePort(t), "--api-credentials", creds).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "chmod 600") || strings.Contains(string(out), "secret-not-shown") {
		t.Fatalf("serve with a 0644 credentials file: %v\n%s", err, out)
	}
}

// SIGHUP reloads the credentials file: a new key works, a removed one is
// refused, and a file that does not load keeps the keys in use.
func TestServeReloadsCredentials(t *testing.T) {
	bin := buildMpcfs(t)
	work := t.TempDir()
	creds := filepath.Join(work, "creds")
	os.WriteFile(creds, []byte("AKOLD:old-secret:proj\n"), 0o600)
	addr := freePort(t)
	d := startDaemon(t, bin, nil, "serve", "--store", filepath.Join(work, "store"), "--master-key-file", filepath.Join(work, "mk"),
		"--listen", addr, "--api-credentials", creds)
	query := func(c httpapi.Credential) int {
		t.Helper()
		r, _ := http.NewRequest("GET", "http://"+addr+"/v1/proj/encryptions", nil)
		httpapi.Sign(r, nil, c, time.Now())
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	oldC := httpapi.Credential{AccessKey: "AKOLD", SecretKey: "old-secret", ProjectID: "proj"}
	newC := httpapi.Credential{AccessKey: "AKNEW", SecretKey: "new-secret", ProjectID: "proj"}
	if query(oldC) != 200 || query(newC) != 401 {
		t.Fatalf("before reload: old %d, new %d", query(oldC), query(newC))
	}
	os.WriteFile(creds, []byte("AKNEW:new-secret:proj\n"), 0o600)
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for query(newC) != 200 {
		if time.Now().After(deadline) {
			t.Fatalf("new key not accepted after SIGHUP: %s", d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := query(oldC); st != 401 {
		t.Fatalf("removed key after reload: %d", st)
	}
	// A file others may read is refused; the keys in use stay.
	os.Chmod(creds, 0o644)
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(d.log.String(), "keeping the API credentials in use") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged: %s", d.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := query(newC); st != 200 {
		t.Fatalf("key in use after a refused reload: %d", st)
	}
}

// TestOriginPlaysInChromium: hls.js and Shaka Player in headless Chromium play an
// AES-128-CBC output straight from the origin (cross-origin, so through
// its CORS headers), the key handed over by request interception; with
// the wrong key it does not.
func TestOriginPlaysInChromium(t *testing.T) {
	need(t, "node", haveCmd("node"))
	need(t, "chromium (apt-get install chromium)", haveCmd("chromium"))
	// test/browser is the one browser harness (fs's player tests use it
	// too); origin.js there plays a cross-origin page of its own.
	playDir, _ := filepath.Abs(filepath.Join("..", "..", "test", "browser"))
	_, err := os.Stat(filepath.Join(playDir, "node_modules", "hls.js", "dist", "hls.min.js"))
	need(t, "hls.js, Shaka and puppeteer-core (make browserdeps: npm ci in test/browser)", err == nil)
	_, err = os.Stat(filepath.Join(playDir, "node_modules", "shaka-player", "dist", "shaka-player.compiled.js"))
	need(t, "Shaka Player (make browserdeps)", err == nil)
	need(t, "ffmpeg", haveCmd("ffmpeg"))

	work := t.TempDir()
	storeDir := filepath.Join(work, "store")
	if _, err := sample.MakeLadder(filepath.Join(storeDir, "media", "vod"), 8); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(storeDir, "public"), 0o755)
	creds := filepath.Join(work, "creds")
	os.WriteFile(creds, []byte("AKPLAY:play-secret:projp\n"), 0o600)
	addr := freePort(t)
	// The player page's own origin (origin.js serves it): only it may fetch.
	pagePort := freePort(t)[len("127.0.0.1:"):]
	bin := buildMpcfs(t)
	startDaemon(t, bin, nil, "serve", "--store", storeDir, "--master-key-file", filepath.Join(work, "mk"),
		"--listen", addr, "--api-credentials", creds, "--cors-origin", "http://127.0.0.1:"+pagePort)

	const keyURL = "https://keys.example/play/k1"
	body := []byte(`{"input":{"bucket":"media","location":"region1","object":"vod/master.m3u8"},
	 "output":{"bucket":"public","location":"region1","object":"play"},
	 "encryption":{"hls_encrypt":{"key":"0123456789abcdef","url":"` + keyURL + `","algorithm":"AES-128-CBC"}}}`)
	r, _ := http.NewRequest("POST", "http://"+addr+"/v1/projp/encryptions", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	httpapi.Sign(r, body, httpapi.Credential{AccessKey: "AKPLAY", SecretKey: "play-secret"}, time.Now())
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	master := "http://" + addr + "/buckets/public/play/master.m3u8"
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if st, _, _ := curlGet(t, "-I", master); st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("output never appeared")
		}
	}
	type playResult struct {
		OK          bool    `json:"ok"`
		Time        float64 `json:"time"`
		Frames      int     `json:"frames"`
		KeyRequests int     `json:"key_requests"`
		Error       string  `json:"error"`
		stderr      string  // the browser's console and failed requests
	}
	play := func(player, keyHex string, port ...string) playResult {
		t.Helper()
		page := pagePort
		if len(port) > 0 {
			page = port[0]
		}
		job, _ := json.Marshal(map[string]any{"player": player, "page_port": page, "url": master, "key_url": keyURL, "key_hex": keyHex, "seconds": 4, "timeout_ms": 60000})
		cmd := exec.Command("node", "origin.js")
		cmd.Dir = playDir
		cmd.Stdin = bytes.NewReader(job)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, _ := cmd.Output()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var res playResult
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
			t.Fatalf("origin.js: %q %s", out, stderr.String())
		}
		res.stderr = stderr.String()
		return res
	}
	for _, player := range []string{"hls.js", "shaka"} {
		if res := play(player, hex.EncodeToString([]byte("0123456789abcdef"))); !res.OK || res.Frames < 50 || res.KeyRequests == 0 {
			t.Errorf("%s did not play the origin's output: %+v\n%s", player, res, res.stderr)
		} else {
			t.Logf("%s played %.1f s, %d frames, %d key requests", player, res.Time, res.Frames, res.KeyRequests)
		}
		// Negative control: the wrong key does not play.
		if res := play(player, hex.EncodeToString([]byte("fedcba9876543210"))); res.OK {
			t.Errorf("%s played with the wrong key: %+v", player, res)
		} else {
			t.Logf("%s, wrong key: %s", player, res.Error)
		}
	}
	// Negative control: a page of another origin is refused by CORS.
	other := freePort(t)[len("127.0.0.1:"):]
	if res := play("hls.js", hex.EncodeToString([]byte("0123456789abcdef")), other); res.OK || !strings.Contains(res.stderr, "CORS") {
		t.Errorf("a page from an origin not in --cors-origin: %+v", res)
	}
}
