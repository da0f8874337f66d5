package fs_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"

	"github.com/mpcfs/mpcfs/internal/metrics"
)

// TestWarmReadReachesNoDaemon: a file read again while its page cache is
// warm is served by the kernel alone (FOPEN_KEEP_CACHE and long-lived
// output attributes): no READ reaches the daemon, so nothing reaches the
// store either, and a warm output or object reads whole with the store
// down. This is what the bench's warm figures measure (docs/warm-reads.md).
// Negative controls: with the page cache of the file dropped, the same
// read does reach the daemon (its served-bytes counter grows), and with
// the store down it fails with EIO.
func TestWarmReadReachesNoDaemon(t *testing.T) {
	srv, srcDir := minioLadder(t)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	s := newSecret(t)
	iv := []byte("0123456789abcdef")
	f.succeed("warm.json", "enc/warm", s, iv)
	out := f.path("buckets", "public", "enc", "warm", "v0", "seg001.ts")
	obj := f.path("buckets", "media", "vod", "v0", "seg001.ts")
	plain, err := os.ReadFile(filepath.Join(srcDir, "v0", "seg001.ts"))
	if err != nil {
		t.Fatal(err)
	}
	served := func() float64 {
		return promtest.ToFloat64(metrics.BytesServed.WithLabelValues(metrics.KindSegment)) +
			promtest.ToFloat64(metrics.BytesServed.WithLabelValues(metrics.KindObject))
	}

	ct := readFileOK(t, out) // cold: through the daemon
	if got := opensslDecrypt(t, "aes-128-cbc", s.key, iv, ct); !bytes.Equal(got, plain) {
		t.Fatal("the output does not decrypt to the source")
	}
	if got := readFileOK(t, obj); !bytes.Equal(got, plain) {
		t.Fatal("the object does not read as the source")
	}

	before := served()
	if !bytes.Equal(readFileOK(t, out), ct) || !bytes.Equal(readFileOK(t, obj), plain) {
		t.Fatal("a warm read returned other bytes than the cold one")
	}
	if d := served() - before; d != 0 {
		t.Fatalf("a warm read of an output and an object reached the daemon: %.0f bytes served by it", d)
	}
	// Negative control: the counter does see a read that reaches the daemon.
	dropPageCache(t, out)
	if !bytes.Equal(readFileOK(t, out), ct) {
		t.Fatal("re-read after dropping the page cache returned other bytes")
	}
	if d := served() - before; d < float64(len(ct)) {
		t.Fatalf("with its page cache dropped the output's read served %.0f bytes by the daemon, want %d: the check above cannot fail", d, len(ct))
	}

	srv.Stop()
	if !bytes.Equal(readFileOK(t, out), ct) || !bytes.Equal(readFileOK(t, obj), plain) {
		t.Fatal("a warm read with the store down returned other bytes")
	}
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

// readFileOK opens, reads and closes name (one open per call: a warm read
// is a new open of a file whose pages are cached).
func readFileOK(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
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
