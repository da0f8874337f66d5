package fs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
)

// succeed creates a CBC task with a request iv and waits for SUCCEEDED.
func (f *fixture) succeed(name, outObject string, s secret, iv []byte) string {
	f.t.Helper()
	id := f.create(name, request("AES-128-CBC", s, iv, outObject))
	if v := f.wait(id); v.Status != control.Succeeded {
		f.t.Fatalf("task %s: %s: %s", id, v.Status, v.Description)
	}
	return id
}

// readWithin reads a whole file through an open descriptor, failing the
// test if the read does not return within limit (a hang).
func readWithin(t *testing.T, fh *os.File, size int64, limit time.Duration) ([]byte, error) {
	t.Helper()
	type result struct {
		data []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b := make([]byte, size)
		n, err := fh.ReadAt(b, 0)
		done <- result{b[:n], err}
	}()
	select {
	case r := <-done:
		return r.data, r.err
	case <-time.After(limit):
		t.Fatalf("reading %s did not return within %v", fh.Name(), limit)
		return nil, nil
	}
}

// TestReadWhileMinIODown: an output open while MinIO is stopped reads EIO
// promptly (never garbage, never a hang), and the same open file reads
// correct ciphertext once MinIO is back.
func TestReadWhileMinIODown(t *testing.T) {
	srv, srcDir := minioLadder(t)
	need(t, "openssl", haveCmd("openssl"))
	f := newFixture(t, srv.Store(), "mpcfs-system")
	s := newSecret(t)
	iv := []byte("0123456789abcdef")
	f.succeed("down.json", "enc/down", s, iv)
	out := f.path("buckets", "public", "enc", "down", "v0", "seg001.ts")
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	fh, err := os.Open(out) // the output index needs no store: open works
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()

	srv.Stop()
	start := time.Now()
	_, err = readWithin(t, fh, st.Size(), 60*time.Second)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("read with MinIO stopped: %v, want EIO", err)
	}
	t.Logf("EIO after %v", time.Since(start).Round(time.Millisecond))
	if _, err := os.ReadDir(f.path("control", "tasks")); err != nil {
		t.Fatalf("control/ stopped serving while the store is down: %v", err)
	}

	srv.Restart(t)
	ct, err := readWithin(t, fh, st.Size(), 60*time.Second)
	if err != nil || int64(len(ct)) != st.Size() {
		t.Fatalf("read after MinIO came back: %d bytes, %v", len(ct), err)
	}
	plain, _ := os.ReadFile(filepath.Join(srcDir, "v0", "seg001.ts"))
	if got := opensslDecrypt(t, "aes-128-cbc", s.key, iv, ct); !bytes.Equal(got, plain) {
		t.Fatal("after MinIO came back the output does not decrypt to the source")
	}
	if _, err := os.ReadFile(f.path("buckets", "media", "vod", "v0", "seg002.ts")); err != nil {
		t.Fatalf("reading a plain object after MinIO came back: %v", err)
	}
}

// TestCreateWhileMinIODown: a request made while the store is unreachable
// is answered MPC.10212 naming the problem (no task is created, nothing is
// left PROCESSING); once MinIO is back the same request succeeds.
func TestCreateWhileMinIODown(t *testing.T) {
	srv, _ := minioLadder(t)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	body, _ := json.Marshal(validRequest())

	srv.Stop()
	resp := f.submit("down.json", body)
	var e control.APIError
	if err := json.Unmarshal(resp, &e); err != nil || e.Code != control.CodeOperationFailed {
		t.Fatalf("response with the store down: %s, want %s", resp, control.CodeOperationFailed)
	}
	if !strings.Contains(e.Msg, "input.bucket") || !strings.Contains(e.Msg, "unavailable") {
		t.Errorf("error_msg %q should name input.bucket and say the store is unavailable", e.Msg)
	}
	if ids := f.mgr.TaskIDs(); len(ids) != 0 {
		t.Errorf("a task was created with the store down: %v", ids)
	}

	srv.Restart(t)
	id := f.create("up.json", validRequest())
	if v := f.wait(id); v.Status != control.Succeeded {
		t.Fatalf("after MinIO came back: %s %s", v.Status, v.Description)
	}
}

// TestSourceChangedAfterTask: a source segment replaced (same size, other
// bytes) or deleted after its task ran makes that output fail with EIO -
// never ciphertext of the new bytes - with a log line and a note in the
// task naming the object. Other outputs of the task are still served.
func TestSourceChangedAfterTask(t *testing.T) {
	srv, srcDir := minioLadder(t)
	need(t, "openssl", haveCmd("openssl"))
	f := newFixture(t, srv.Store(), "mpcfs-system")
	s := newSecret(t)
	iv := []byte("0123456789abcdef")
	id := f.succeed("changed.json", "enc/changed", s, iv)

	orig, _ := os.ReadFile(filepath.Join(srcDir, "v0", "seg000.ts"))
	changed := append([]byte(nil), orig...)
	changed[len(changed)/2] ^= 0xff
	srv.PutFile(t, "media", "vod/v0/seg000.ts", changed)
	if err := srv.Store().Delete(t.Context(), "media", "vod/v0/seg001.ts"); err != nil {
		t.Fatal(err)
	}
	out := f.path("buckets", "public", "enc", "changed")
	for _, seg := range []string{"seg000.ts", "seg001.ts"} {
		if data, err := os.ReadFile(filepath.Join(out, "v0", seg)); !errors.Is(err, syscall.EIO) {
			t.Errorf("reading output v0/%s after its source changed: %d bytes, %v; want EIO", seg, len(data), err)
		}
	}
	rel := filepath.Join("v0", "seg002.ts")
	checkSegment(t, filepath.Join(srcDir, rel), filepath.Join(out, rel), s.key, iv)
	if _, err := os.ReadFile(filepath.Join(out, "v0", "index.m3u8")); err != nil {
		t.Errorf("playlist of the task: %v", err)
	}

	logData, _ := os.ReadFile(f.logFile)
	for _, name := range []string{"media/vod/v0/seg000.ts was changed", "media/vod/v0/seg001.ts was deleted"} {
		if !strings.Contains(string(logData), name) {
			t.Errorf("the log does not say %q:\n%s", name, logData)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := f.wait(id)
		if v.Status == control.Succeeded && strings.Contains(v.Description, "seg000.ts was changed") &&
			strings.Contains(v.Description, "seg001.ts was deleted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task description does not note the changed sources: %s %q", v.Status, v.Description)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// within runs op and fails the test if it does not return within limit.
func within(t *testing.T, what string, limit time.Duration, op func() error) error {
	t.Helper()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- op() }()
	select {
	case err := <-done:
		t.Logf("%s: %v after %v", what, err, time.Since(start).Round(time.Millisecond))
		return err
	case <-time.After(limit):
		t.Errorf("%s did not return within %v", what, limit)
		return nil
	}
}

// TestFrozenStore: with MinIO frozen (SIGSTOP: connections hang, nothing
// is refused), what the mount already holds answers at once - planned
// playlists (stat, open, read), output names and sizes, the folders
// leading to them - and what needs the store answers EIO within a few
// seconds, never a hang of tens of seconds. Once thawed, all works.
func TestFrozenStore(t *testing.T) {
	srv, _ := minioLadder(t)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	s := newSecret(t)
	f.succeed("frozen.json", "enc/frozen", s, []byte("0123456789abcdef"))
	master := f.path("buckets", "public", "enc", "frozen", "master.m3u8")
	want, err := os.ReadFile(master)
	if err != nil {
		t.Fatal(err)
	}
	srv.Freeze(t)
	time.Sleep(1500 * time.Millisecond) // the kernel's 1 s name and attribute cache expires
	const held = 2 * time.Second
	if err := within(t, "reading a planned master", held, func() error {
		got, err := os.ReadFile(master)
		if err == nil && !bytes.Equal(got, want) {
			err = errors.New("different bytes")
		}
		return err
	}); err != nil {
		t.Errorf("reading the planned master with the store frozen: %v", err)
	}
	if err := within(t, "reading a planned variant", held, func() error {
		_, err := os.ReadFile(f.path("buckets", "public", "enc", "frozen", "v0", "index.m3u8"))
		return err
	}); err != nil {
		t.Errorf("reading a planned variant with the store frozen: %v", err)
	}
	if err := within(t, "stat of an output segment", held, func() error {
		st, err := os.Stat(f.path("buckets", "public", "enc", "frozen", "v1", "seg001.ts"))
		if err == nil && st.Size()%16 != 0 {
			err = fmt.Errorf("size %d is not CBC", st.Size())
		}
		return err
	}); err != nil {
		t.Errorf("stat of an output segment with the store frozen: %v", err)
	}
	// A folder of outputs lists them once the store has not answered.
	if err := within(t, "listing an output folder", 8*time.Second, func() error {
		entries, err := os.ReadDir(f.path("buckets", "public", "enc", "frozen"))
		if err == nil && len(entries) != 3 {
			err = fmt.Errorf("%d entries, want master.m3u8, v0, v1", len(entries))
		}
		return err
	}); err != nil {
		t.Errorf("listing an output folder with the store frozen: %v", err)
	}
	const needsStore = 10 * time.Second
	for what, op := range map[string]func() error{
		"stat of a source object": func() error { _, err := os.Stat(f.path("buckets", "media", "vod", "v0", "seg002.ts")); return err },
		"listing a source folder": func() error { _, err := os.ReadDir(f.path("buckets", "media", "vod")); return err },
		"reading an output segment": func() error {
			_, err := os.ReadFile(f.path("buckets", "public", "enc", "frozen", "v0", "seg002.ts"))
			return err
		},
	} {
		if err := within(t, what, needsStore, op); !errors.Is(err, syscall.EIO) {
			t.Errorf("%s with the store frozen: %v, want EIO", what, err)
		}
	}
	srv.Thaw()
	if _, err := os.ReadFile(f.path("buckets", "public", "enc", "frozen", "v0", "seg002.ts")); err != nil {
		t.Errorf("reading after the store is back: %v", err)
	}
}
