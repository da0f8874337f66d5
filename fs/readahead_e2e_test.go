package fs_test

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mpcfs/mpcfs/tuning"
)

// TestMountSetsReadAhead: the mount's kernel read-ahead (its bdi, found
// here from the mount point's st_dev) is what mpcfs asks for, not the
// kernel's 128 KiB.
func TestMountSetsReadAhead(t *testing.T) {
	need(t, "root (to set a bdi's read_ahead_kb)", os.Geteuid() == 0)
	st, _ := localStore(t, "media")
	f := newFixture(t, st, ".mpcfs")
	var s syscall.Stat_t
	if err := syscall.Stat(f.mnt, &s); err != nil {
		t.Fatal(err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(s.Dev), unix.Minor(s.Dev))
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(data)); got != fmt.Sprint(tuning.Default().ReadAheadKB) {
		t.Fatalf("%s = %s, want %d", p, got, tuning.Default().ReadAheadKB)
	}
}
