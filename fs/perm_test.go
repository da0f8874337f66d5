package fs_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/fs"
)

// asNobody runs a shell command as uid/gid 65534 with no groups.
func asNobody(t *testing.T, script string) (string, error) {
	t.Helper()
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script).CombinedOutput()
	return string(out), err
}

// openPath lets other users reach the mount point: t.TempDir() folders
// are 0700.
func openPath(t *testing.T, mnt string) {
	for dir := filepath.Dir(mnt); dir != os.TempDir() && dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPermissions: with --allow-other another user reads task outputs in
// buckets/ but not control/, and (default --others-see outputs) not the
// sources: they are neither listed nor found, and mode 0400 even when the
// owner's lookup put them in the kernel's cache. --others-see all (the
// negative control) lets the same user read a source. Without allow-other
// the mount is the owner's only. Every write outside control/ fails with
// EROFS for the owner (EACCES for others, from the mode bits).
func TestPermissions(t *testing.T) {
	srcDir, _ := ladder(t)
	need(t, "root (to mount with allow_other and switch users)", os.Geteuid() == 0)
	need(t, "setpriv (util-linux)", haveCmd("setpriv"))
	st, _ := localStore(t, "media", "public")
	upload(t, st, "media", "vod/", srcDir)

	open := newFixtureOpts(t, st, ".mpcfs", mountOpts{allowOther: true})
	openPath(t, open.mnt)
	id := open.create("perm.json", validRequest())
	if v := open.wait(id); v.Status != control.Succeeded {
		t.Fatalf("task: %s %s", v.Status, v.Description)
	}
	source := open.path("buckets", "media", "vod", "master.m3u8")
	if out, err := asNobody(t, "cat "+open.path("buckets", "public", "out", "master.m3u8")+" "+open.path("buckets", "public", "out", "v0", "seg000.ts")+" >/dev/null && ls "+open.path("buckets", "public", "out")); err != nil {
		t.Errorf("another user cannot read outputs with allow-other: %v: %s", err, out)
	}
	if out, err := asNobody(t, "cat "+source); err == nil || !strings.Contains(out, "No such file") {
		t.Errorf("another user found a source with --others-see outputs: %v: %s", err, out)
	}
	if out, _ := asNobody(t, "ls "+open.path("buckets")+"; ls "+open.path("buckets", "public")); strings.Contains(out, "media") || !strings.Contains(out, "out") {
		t.Errorf("another user's listing of buckets/ shows sources or lacks outputs:\n%s", out)
	}
	if _, err := os.ReadFile(source); err != nil { // the owner reads it (and the kernel caches its entry)
		t.Errorf("the owner cannot read a source: %v", err)
	}
	if out, err := asNobody(t, "cat "+source); err == nil {
		t.Errorf("another user read a source through the owner's cached entry: %s", out)
	}

	all := newFixtureOpts(t, st, ".mpcfs", mountOpts{allowOther: true, othersSee: fs.OthersSeeAll, masterKey: open.masterKey})
	openPath(t, all.mnt)
	if out, err := asNobody(t, "cat "+all.path("buckets", "media", "vod", "master.m3u8")+" >/dev/null && ls "+all.path("buckets", "media", "vod")); err != nil {
		t.Errorf("another user cannot read a source with --others-see all: %v: %s", err, out)
	}
	for _, p := range []string{open.path("control"), open.path("control", "tasks", id+".json"), open.path("control", "encryptions", "perm.json")} {
		out, err := asNobody(t, "ls "+p+" && cat "+p)
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("another user reached %s with allow-other: %v: %s", p, err, out)
		}
	}
	if out, err := asNobody(t, "echo '{}' > "+open.path("buckets", "public", "x.json")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another user wrote to buckets/: %v: %s", err, out)
	}
	st2, _ := localStore(t, "media")
	closed := newFixtureOpts(t, st2, ".mpcfs", mountOpts{})
	openPath(t, closed.mnt)
	if out, err := asNobody(t, "ls "+closed.path("buckets")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another user listed buckets/ without allow-other: %v: %s", err, out)
	}
	if fi, err := os.Stat(open.path("control")); err != nil || fi.Mode().Perm() != 0o700 || fi.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
		t.Errorf("control/ is %v (%v), want 0700 owned by the mount's owner", fi.Mode(), err)
	}
	checkReadOnly(t, open, id)
}

// checkReadOnly: the owner's writes outside control/encryptions and
// control/cancel fail with EROFS, and nothing changes in the store.
func checkReadOnly(t *testing.T, f *fixture, id string) {
	obj := f.path("buckets", "media", "vod", "master.m3u8")
	out := f.path("buckets", "public", "out", "v0", "seg000.ts")
	writes := map[string]func() error{
		"create in a bucket":   func() error { return os.WriteFile(f.path("buckets", "media", "new.txt"), []byte("x"), 0o644) },
		"create in buckets/":   func() error { return os.WriteFile(f.path("buckets", "new"), []byte("x"), 0o644) },
		"mkdir in a bucket":    func() error { return os.Mkdir(f.path("buckets", "media", "newdir"), 0o755) },
		"mkdir a bucket":       func() error { return os.Mkdir(f.path("buckets", "newbucket"), 0o755) },
		"unlink an object":     func() error { return os.Remove(obj) },
		"unlink an output":     func() error { return os.Remove(out) },
		"rmdir a folder":       func() error { return os.Remove(f.path("buckets", "media", "vod", "v0")) },
		"rename an object":     func() error { return os.Rename(obj, f.path("buckets", "media", "vod", "m2.m3u8")) },
		"write an object":      func() error { return openWrite(obj) },
		"write an output":      func() error { return openWrite(out) },
		"truncate an object":   func() error { return os.Truncate(obj, 0) },
		"chmod an output":      func() error { return os.Chmod(out, 0o666) },
		"symlink in a bucket":  func() error { return os.Symlink("/etc/passwd", f.path("buckets", "media", "l")) },
		"mkdir in control/":    func() error { return os.Mkdir(f.path("control", "x"), 0o700) },
		"create in control/":   func() error { return os.WriteFile(f.path("control", "x.json"), []byte("{}"), 0o600) },
		"unlink a task":        func() error { return os.Remove(f.path("control", "tasks", id+".json")) },
		"create a task file":   func() error { return os.WriteFile(f.path("control", "tasks", "1.json"), []byte("{}"), 0o600) },
		"mkdir in encryptions": func() error { return os.Mkdir(f.path("control", "encryptions", "d"), 0o700) },
	}
	for name, w := range writes {
		if err := w(); !errors.Is(err, syscall.EROFS) {
			t.Errorf("%s: %v, want EROFS", name, err)
		}
	}
	if _, err := os.Stat(obj); err != nil {
		t.Errorf("the object is gone after refused writes: %v", err)
	}
}

func openWrite(p string) error {
	fh, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err == nil {
		fh.Close()
	}
	return err
}
