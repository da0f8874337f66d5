// Package testutil holds the helpers every package's tests share, so that
// they cannot drift apart: the rule for missing tools, polling, openssl as
// the independent reference, and the key server ffmpeg needs.
package testutil

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/store"
)

// Need skips a test when a real part (a tool, /dev/fuse, root) is missing,
// and fails it under CI (CI set in the environment): CI must never pass by
// skipping the checks that use real tools.
func Need(t testing.TB, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing; CI installs it (.ci/run, make test)", what)
	}
	t.Skipf("%s is missing", what)
}

// ReadFile reads the file at path whole, failing the test if it cannot.
func ReadFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// HaveCmd reports whether name is on PATH.
func HaveCmd(name string) bool { _, err := exec.LookPath(name); return err == nil }

// NeedCmd is Need for a command on PATH.
func NeedCmd(t testing.TB, name string) {
	t.Helper()
	Need(t, name+" (on PATH)", HaveCmd(name))
}

// Eventually polls cond every 20 ms until it holds, failing the test with
// what after limit.
func Eventually(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(limit); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
	}
}

// OpenSSL runs `openssl enc -CIPHER` (decrypt: with -d) on in with key
// and iv: the independent reference our ciphertext is checked against.
// cipher is openssl's name: aes-128-cbc, aes-128-ctr, sm4-cbc.
func OpenSSL(t testing.TB, decrypt bool, cipher string, key, iv, in []byte) []byte {
	t.Helper()
	NeedCmd(t, "openssl")
	args := []string{"enc", "-" + cipher, "-K", hex.EncodeToString(key), "-iv", hex.EncodeToString(iv)}
	if decrypt {
		args = append(args, "-d")
	}
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v: %s", args[:2], err, stderr.String())
	}
	return out
}

// ServeKey answers a player's key request with key. ffmpeg 5.1 sends the
// Range of the byte-range segment it is about to read with the request
// for that segment's key and insists on a 206 at that offset, so a ranged
// request gets the key as if it sat at the requested offset.
func ServeKey(w http.ResponseWriter, r *http.Request, key []byte) {
	var start int64
	if _, err := fmt.Sscanf(r.Header.Get("Range"), "bytes=%d-", &start); err != nil || start == 0 {
		w.Write(key)
		return
	}
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+int64(len(key))-1, start+int64(len(key))))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(key)
}

// SyncBuffer collects output written from several goroutines (a log, a
// child process's stdout) and reads it while they write.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String is everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Requests records what a test's spy (a store wrapper, a proxy) saw, one
// line per request, from any goroutine.
type Requests struct {
	mu   sync.Mutex
	seen []string
}

// Add records one request.
func (r *Requests) Add(line string) {
	r.mu.Lock()
	r.seen = append(r.seen, line)
	r.mu.Unlock()
}

// Take returns the requests recorded since the last Take.
func (r *Requests) Take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := r.seen
	r.seen = nil
	return seen
}

// CountedBody is a store response body that counts itself closed once
// (open goes down by one) and tells what the response said
// (store.Answer) as the body it wraps does: the leak checks of the
// speculative GETs count the bodies still open.
type CountedBody struct {
	io.ReadCloser
	store.Answer
	Open *atomic.Int64
	once sync.Once
}

// Count wraps rc, counting it open; a body that tells nothing is
// returned as it is.
func Count(rc io.ReadCloser, open *atomic.Int64) io.ReadCloser {
	a, ok := rc.(store.Answer)
	if !ok {
		return rc
	}
	open.Add(1)
	return &CountedBody{ReadCloser: rc, Answer: a, Open: open}
}

func (b *CountedBody) Close() error {
	b.once.Do(func() { b.Open.Add(-1) })
	return b.ReadCloser.Close()
}
