package fs_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// interruptedCalls runs op on one OS thread while another goroutine sends
// that thread SIGALRM every few microseconds (tgkill), as a shell's
// SIGCHLD or an interval timer would: each signal arriving while the call
// waits for the mount makes the kernel send FUSE_INTERRUPT. It returns how
// many calls failed with EINTR and the first other error.
func interruptedCalls(t *testing.T, n int, op func(i int) error) (eintr int, other error) {
	t.Helper()
	done := make(chan struct{})
	var tid atomic.Int32
	go func() {
		defer close(done)
		runtime.LockOSThread() // the thread that is signalled is the one calling
		defer runtime.UnlockOSThread()
		tid.Store(int32(syscall.Gettid()))
		for i := 0; i < n; i++ {
			err := op(i)
			switch {
			case errors.Is(err, syscall.EINTR):
				eintr++
			case err != nil && other == nil:
				other = err
			}
		}
	}()
	pid := os.Getpid()
	for {
		select {
		case <-done:
			return eintr, other
		default:
		}
		if id := tid.Load(); id != 0 {
			syscall.Tgkill(pid, int(id), syscall.SIGALRM)
		}
		time.Sleep(5 * time.Microsecond)
	}
}

// TestSignalsNeverFailLookups: lookups, getattr, readdir and open of cold
// paths on MinIO, each hit by signals while the mount asks the store,
// never fail with EINTR (bash's [[ -f ]] does not retry a stat): the mount
// finishes them, bounded by its own timeout. Missing names (never cached)
// and a fresh object name per call keep every call a store round trip.
func TestSignalsNeverFailLookups(t *testing.T) {
	srv, _ := minioLadder(t)
	const objects = 150
	for i := 0; i < objects; i++ {
		srv.PutFile(t, "media", fmt.Sprintf("cold/%03d/obj", i), []byte("x"))
	}
	f := newFixture(t, srv.Store(), "mpcfs-system")
	var st syscall.Stat_t
	// Missing names: ENOENT is the right answer, EINTR never.
	eintr, err := interruptedCalls(t, 300, func(i int) error {
		err := syscall.Stat(f.path("buckets", "media", "vod", fmt.Sprintf("missing-%d.ts", i)), &st)
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if err == nil {
			return fmt.Errorf("missing-%d.ts exists", i)
		}
		return err
	})
	if eintr > 0 || err != nil {
		t.Errorf("stat of missing names under signals: %d EINTR of 300, other error %v", eintr, err)
	}
	// Existing objects, each looked up (folder and file) for the first time.
	eintr, err = interruptedCalls(t, objects, func(i int) error {
		return syscall.Stat(f.path("buckets", "media", "cold", fmt.Sprintf("%03d", i), "obj"), &st)
	})
	if eintr > 0 || err != nil {
		t.Errorf("stat of cold objects under signals: %d EINTR of %d, other error %v", eintr, objects, err)
	}
	// Readdir and open of the same folders (their listings are not cached).
	eintr, err = interruptedCalls(t, objects, func(i int) error {
		dir := f.path("buckets", "media", "cold", fmt.Sprintf("%03d", i))
		fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		buf := make([]byte, 4096)
		if _, err := syscall.Getdents(fd, buf); err != nil {
			return err
		}
		fh, err := syscall.Open(dir+"/obj", syscall.O_RDONLY, 0)
		if err == nil {
			syscall.Close(fh)
		}
		return err
	})
	if eintr > 0 || err != nil {
		t.Errorf("readdir/open under signals: %d EINTR of %d, other error %v", eintr, objects, err)
	}
}
