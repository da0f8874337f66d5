package fs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mpcfs/mpcfs/internal/testutil"
)

// TestWarmReadReachesNoDaemon: a file read again while its page cache is
// warm is served by the kernel alone (FOPEN_KEEP_CACHE and long-lived
// output attributes): no READ reaches the daemon, so nothing reaches the
// store either, and a warm output or object reads whole with the store
// down. This is what the bench's warm figures measure (docs/warm-reads.md).
// The requests are counted in the go-fuse request log of this mount.
// Negative controls: with the page cache of the file dropped, the same
// read does send READs, and with the store down it fails with EIO. A
// check during which another process dropped every page cache
// (drop_caches, as benchmarks do) is made again (untilNoDrop).
func TestWarmReadReachesNoDaemon(t *testing.T) {
	srv, srcDir := minioLadder(t)
	f := newFixtureOpts(t, srv.Store(), "mpcfs-system", mountOpts{debug: true})
	s := newSecret(t)
	iv := []byte("0123456789abcdef")
	f.succeed("warm.json", "enc/warm", s, iv)
	out := f.path("buckets", "public", "enc", "warm", "v0", "seg001.ts")
	obj := f.path("buckets", "media", "vod", "v0", "seg001.ts")
	plain, err := os.ReadFile(filepath.Join(srcDir, "v0", "seg001.ts"))
	if err != nil {
		t.Fatal(err)
	}

	ct := testutil.ReadFile(t, out) // cold: through the daemon
	if got := opensslDecrypt(t, "aes-128-cbc", s.key, iv, ct); !bytes.Equal(got, plain) {
		t.Fatal("the output does not decrypt to the source")
	}
	if got := testutil.ReadFile(t, obj); !bytes.Equal(got, plain) {
		t.Fatal("the object does not read as the source")
	}

	// The output's name and attributes live long; the object's name is
	// trusted for EntryTTL only, so its warm open may revalidate it
	// (LOOKUP), but its pages are kept all the same.
	for _, c := range []struct {
		what, name string
		want       []byte
	}{{"output", out, ct}, {"object", obj, plain}} {
		untilNoDrop(t, func() func() {
			testutil.ReadFile(t, c.name) // warm again, should the page cache have been dropped
			mark := f.logMark()
			data := readFile(c.name)
			got := f.requestsSince(mark)
			return func() {
				if !bytes.Equal(data, c.want) {
					t.Fatalf("a warm read of the %s returned other bytes than the cold one", c.what)
				}
				if got["READ"] != 0 || got["OPEN"] != 1 {
					t.Fatalf("a warm read of the %s sent %v to the daemon, want one OPEN and no READ", c.what, got)
				}
			}
		})
	}
	// Negative control: a read past the page cache shows in the count.
	dropPageCache(t, out)
	mark := f.logMark()
	if !bytes.Equal(testutil.ReadFile(t, out), ct) {
		t.Fatal("re-read after dropping the page cache returned other bytes")
	}
	if got := f.requestsSince(mark); got["READ"] == 0 {
		t.Fatalf("with its page cache dropped the output's read sent %v: no READ, so the check above cannot fail", got)
	}

	first := true
	untilNoDrop(t, func() func() {
		if !first {
			srv.Restart(t)
		}
		first = false
		testutil.ReadFile(t, out)
		testutil.ReadFile(t, obj)
		srv.Stop()
		outData, objData := readFile(out), readFile(obj)
		return func() {
			if !bytes.Equal(outData, ct) || !bytes.Equal(objData, plain) {
				t.Fatalf("a warm read with the store down: output %d of %d bytes, object %d of %d, or other bytes", len(outData), len(ct), len(objData), len(plain))
			}
		}
	})
	// Negative control: a read that has to reach the daemon fails now.
	dropPageCache(t, out)
	fh, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if _, err := readWithin(t, fh, int64(len(ct)), 60*time.Second); !errors.Is(err, syscall.EIO) {
		t.Fatalf("a read past the page cache with the store down: %v, want EIO", err)
	}
}

// logMark is where the fixture's log ends now.
func (f *fixture) logMark() int64 {
	f.t.Helper()
	st, err := os.Stat(f.logFile)
	if err != nil {
		f.t.Fatal(err)
	}
	return st.Size()
}

// requestsSince counts the FUSE requests by opcode that go-fuse logged
// (mountOpts.debug: "rx 12: READ i5 {...}") after mark.
func (f *fixture) requestsSince(mark int64) map[string]int {
	f.t.Helper()
	data, err := os.ReadFile(f.logFile)
	if err != nil {
		f.t.Fatal(err)
	}
	n := map[string]int{}
	for _, line := range strings.Split(string(data[mark:]), "\n") {
		_, rest, ok := strings.Cut(line, " rx ")
		if !ok {
			continue
		}
		if _, req, ok := strings.Cut(rest, ": "); ok {
			n[strings.Fields(req + " ")[0]]++
		}
	}
	return n
}

// untilNoDrop runs try, again (five times at most) while the kernel's
// page cache was dropped system-wide during it (drop_caches, counted in
// /proc/vmstat): another process on the machine, a benchmark, can empty
// every page cache, and a warm read is then a cold one. try measures and
// returns the verdict, which is given only for a run with no drop (or the
// last one).
func untilNoDrop(t *testing.T, try func() (verdict func())) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		before := dropCount(t)
		verdict := try()
		if dropCount(t) == before || attempt == 5 {
			verdict()
			return
		}
		t.Logf("the page cache was dropped by another process during attempt %d: again", attempt)
	}
}

// dropCount is how many times the page cache was dropped system-wide.
func dropCount(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/vmstat")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "drop_pagecache "); ok {
			return v
		}
	}
	return ""
}

// readFile is the whole file, or nil when it does not read.
func readFile(name string) []byte {
	data, _ := os.ReadFile(name)
	return data
}

// dropPageCache evicts one file's cached pages (POSIX_FADV_DONTNEED works
// on a FUSE file's page cache as on any other).
func dropPageCache(t *testing.T, name string) {
	t.Helper()
	fh, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := unix.Fadvise(int(fh.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
}
