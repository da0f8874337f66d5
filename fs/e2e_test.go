package fs_test

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/internal/sample"
	"github.com/mpcfs/mpcfs/internal/testutil"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/store/miniotest"
)

// media is one ffmpeg-made ladder shared by the tests of this package.
var media struct {
	once sync.Once
	dir  string
	l    *sample.Ladder
	err  error
}

func ladder(t *testing.T) (string, *sample.Ladder) {
	t.Helper()
	need(t, "ffmpeg (apt-get install ffmpeg)", haveCmd("ffmpeg"))
	media.once.Do(func() {
		media.dir, media.err = os.MkdirTemp("", "mpcfs-media-")
		if media.err == nil {
			media.l, media.err = sample.MakeLadder(media.dir, 8)
		}
	})
	if media.err != nil {
		t.Fatal(media.err)
	}
	return media.dir, media.l
}

func TestMain(m *testing.M) {
	code := m.Run()
	if media.dir != "" {
		os.RemoveAll(media.dir)
	}
	os.Exit(code)
}

// upload copies the ladder into bucket/prefix of a store.
func upload(t *testing.T, st store.Store, bucket, prefix, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		return st.Put(t.Context(), bucket, prefix+filepath.ToSlash(rel), data)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// minioLadder starts MinIO with the test ladder in media/vod/ and an empty
// public bucket.
func minioLadder(t *testing.T) (*miniotest.Server, string) {
	srcDir, _ := ladder(t)
	needFUSE(t)
	srv := miniotest.Start(t)
	srv.MakeBucket(t, "media")
	srv.MakeBucket(t, "public")
	upload(t, srv.Store(), "media", "vod/", srcDir)
	return srv, srcDir
}

// localStore is a local-directory store with the given empty buckets.
func localStore(t *testing.T, buckets ...string) (*store.Local, string) {
	dir := t.TempDir()
	for _, b := range buckets {
		if err := os.MkdirAll(filepath.Join(dir, b), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	st, err := store.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st, dir
}

// secret is a test key and where ffmpeg finds it.
type secret struct {
	key     []byte
	keyFile string
}

func newSecret(t *testing.T) secret {
	s := secret{key: make([]byte, 16), keyFile: filepath.Join(t.TempDir(), "video.key")}
	rand.Read(s.key)
	if err := os.WriteFile(s.keyFile, s.key, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

func request(alg string, s secret, iv []byte, outObject string) map[string]any {
	enc := map[string]string{"key": base64.StdEncoding.EncodeToString(s.key), "url": s.keyFile, "algorithm": alg}
	if iv != nil {
		enc["iv"] = base64.StdEncoding.EncodeToString(iv)
	}
	return map[string]any{
		"input":      map[string]string{"bucket": "media", "location": "region1", "object": "vod/master.m3u8"},
		"output":     map[string]string{"bucket": "public", "location": "region1", "object": outObject},
		"encryption": map[string]any{"hls_encrypt": enc},
		"user_data":  "e2e",
	}
}

// submit writes a request file through the mount and returns its response.
func (f *fixture) submit(name string, req []byte) []byte {
	f.t.Helper()
	p := f.path("control", "encryptions", name)
	// A rejected request fails close(2) with EINVAL; its body is read back.
	if err := os.WriteFile(p, req, 0o600); err != nil && !errors.Is(err, syscall.EINVAL) {
		f.t.Fatalf("writing %s: %v", p, err)
	}
	resp, err := os.ReadFile(p)
	if err != nil {
		f.t.Fatalf("reading back %s: %v", p, err)
	}
	return resp
}

// create submits a valid request and returns the task id.
func (f *fixture) create(name string, req any) string {
	f.t.Helper()
	body, _ := json.Marshal(req)
	resp := f.submit(name, body)
	var r struct {
		TaskID string `json:"task_id"`
	}
	if err := json.Unmarshal(resp, &r); err != nil || r.TaskID == "" {
		f.t.Fatalf("create %s: response %s", name, resp)
	}
	return r.TaskID
}

// wait polls control/tasks/<id>.json until the task is in a final state.
func (f *fixture) wait(id string) control.TaskView {
	f.t.Helper()
	var v control.TaskView
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		data, err := os.ReadFile(f.path("control", "tasks", id+".json"))
		if err != nil {
			f.t.Fatalf("query task %s: %v", id, err)
		}
		if err := json.Unmarshal(data, &v); err != nil {
			f.t.Fatalf("task %s: %v in %s", id, err, data)
		}
		if v.Status.Final() {
			return v
		}
	}
	f.t.Fatalf("task %s still %s after 60s", id, v.Status)
	return v
}

// segmentsOf returns the URI lines of a media playlist.
func segmentsOf(pl []byte) []string {
	var segs []string
	sc := bufio.NewScanner(bytes.NewReader(pl))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			segs = append(segs, l)
		}
	}
	return segs
}

// keepsEveryLine checks that out holds every line of src, in order.
func keepsEveryLine(t *testing.T, name string, src, out []byte) {
	t.Helper()
	outLines := strings.Split(string(out), "\n")
	i := 0
	for _, l := range strings.Split(strings.TrimRight(string(src), "\n"), "\n") {
		for i < len(outLines) && outLines[i] != l {
			i++
		}
		if i == len(outLines) {
			t.Fatalf("%s: source line %q missing or out of order in output:\n%s", name, l, out)
		}
		i++
	}
}

// opensslDecrypt decrypts with openssl, an independent implementation.
func opensslDecrypt(t *testing.T, cipherName string, key, iv []byte, ct []byte) []byte {
	t.Helper()
	return testutil.OpenSSL(t, true, cipherName, key, iv, ct)
}

func seqIV(seq int) []byte {
	iv := make([]byte, 16)
	binary.BigEndian.PutUint64(iv[8:], uint64(seq))
	return iv
}

// checkCBCOutput verifies every output of a CBC task against the source:
// playlists keep every line and carry the key, each segment has the exact
// padded size, random reads match, and openssl decrypts it to the source.
func checkCBCOutput(t *testing.T, f *fixture, srcDir string, l *sample.Ladder, outDir string, s secret, iv []byte) {
	master, err := os.ReadFile(filepath.Join(outDir, l.Master))
	if err != nil {
		t.Fatal(err)
	}
	srcMaster, _ := os.ReadFile(filepath.Join(srcDir, l.Master))
	if !bytes.Equal(master, srcMaster) {
		t.Errorf("master playlist changed:\n%s", master)
	}
	for _, v := range l.Variants {
		srcPl, _ := os.ReadFile(filepath.Join(srcDir, v))
		outPl, err := os.ReadFile(filepath.Join(outDir, v))
		if err != nil {
			t.Fatal(err)
		}
		keepsEveryLine(t, v, srcPl, outPl)
		wantKey := fmt.Sprintf(`#EXT-X-KEY:METHOD=AES-128,URI="%s"`, s.keyFile)
		if iv != nil {
			wantKey += ",IV=0x" + hex.EncodeToString(iv)
		}
		if !strings.Contains(string(outPl), wantKey+"\n") {
			t.Errorf("%s: no %q in\n%s", v, wantKey, outPl)
		}
		for i, seg := range segmentsOf(srcPl) {
			segIV := iv
			if segIV == nil {
				segIV = seqIV(i) // EXT-X-MEDIA-SEQUENCE is 0 in ffmpeg's output
			}
			rel := filepath.Join(filepath.Dir(v), seg)
			checkSegment(t, filepath.Join(srcDir, rel), filepath.Join(outDir, rel), s.key, segIV)
		}
	}
}

func checkSegment(t *testing.T, srcPath, outPath string, key, iv []byte) {
	t.Helper()
	plain, err := os.ReadFile(srcPath)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(len(plain)) + 16 - int64(len(plain))%16
	st, err := os.Stat(outPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != want {
		t.Fatalf("%s: size %d before reading, want %d", outPath, st.Size(), want)
	}
	reads := randomReads(t, outPath, want)
	ct, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	for off, b := range reads {
		if !bytes.Equal(b, ct[off:off+int64(len(b))]) {
			t.Fatalf("%s: random read at %d differs from the sequential read", outPath, off)
		}
	}
	if got := opensslDecrypt(t, "aes-128-cbc", key, iv, ct); !bytes.Equal(got, plain) {
		t.Fatalf("%s: openssl decrypts to %d bytes that differ from the %d source bytes", outPath, len(got), len(plain))
	}
}

// randomReads preads a fresh file at random offsets before anything has
// read it, so the reads reach mpcfs out of order.
func randomReads(t *testing.T, path string, size int64) map[int64][]byte {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	reads := map[int64][]byte{}
	for i := 0; i < 4; i++ {
		off := rand.Int63n(size)
		b := make([]byte, min(int64(1+rand.Intn(70000)), size-off))
		if _, err := fh.ReadAt(b, off); err != nil {
			t.Fatalf("%s: pread %d@%d: %v", path, len(b), off, err)
		}
		reads[off] = b
	}
	return reads
}

// checkPlays decodes source and output with ffmpeg: same frames.
func checkPlays(t *testing.T, srcMaster, outMaster string) {
	t.Helper()
	want, err := sample.FrameMD5(srcMaster)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sample.FrameMD5(outMaster, "-allowed_extensions", "ALL")
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("ffmpeg decodes %s to other frames than the source", outMaster)
	}
	if strings.Count(want, "\n") < 100 {
		t.Fatalf("framemd5 has too few frames to mean anything:\n%s", want)
	}
}

func runCBCTask(t *testing.T, f *fixture, iv []byte) {
	srcDir, l := ladder(t)
	need(t, "openssl", haveCmd("openssl"))
	s := newSecret(t)
	id := f.create("cbc.json", request("AES-128-CBC", s, iv, "enc/cbc"))
	if v := f.wait(id); v.Status != control.Succeeded {
		t.Fatalf("task %s: %s: %s", id, v.Status, v.Description)
	}
	outDir := f.path("buckets", "public", "enc", "cbc")
	checkCBCOutput(t, f, srcDir, l, outDir, s, iv)
	checkPlays(t, filepath.Join(srcDir, l.Master), filepath.Join(outDir, l.Master))
	checkNoKey(t, f, s.key)
}

// TestCBCOnMinIO is the whole path against a real MinIO: upload, mount,
// task through control/, openssl and ffmpeg on the mounted output.
func TestCBCOnMinIO(t *testing.T) {
	srv, _ := minioLadder(t)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	runCBCTask(t, f, []byte("0123456789abcdef"))
}

// TestCBCOnLocalStore is the same on the local-directory store, with no iv
// in the request (IV = media sequence number).
func TestCBCOnLocalStore(t *testing.T) {
	srcDir, _ := ladder(t)
	st, _ := localStore(t, "media", "public")
	upload(t, st, "media", "vod/", srcDir)
	f := newFixture(t, st, ".mpcfs")
	runCBCTask(t, f, nil)
}

// checkNoKey greps the log and every file of the mount's control tree for
// the key in each encoding a request accepts.
func checkNoKey(t *testing.T, f *fixture, key []byte) {
	t.Helper()
	forms := [][]byte{key, []byte(base64.StdEncoding.EncodeToString(key)), []byte(hex.EncodeToString(key)),
		[]byte(base64.RawStdEncoding.EncodeToString(key))}
	check := func(name string, data []byte) {
		for _, k := range forms {
			if bytes.Contains(data, k) {
				t.Errorf("%s contains the key", name)
			}
		}
	}
	logData, _ := os.ReadFile(f.logFile)
	check("the log", logData)
	filepath.WalkDir(f.path("control"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(p)
			check(p, data)
		}
		return nil
	})
}
