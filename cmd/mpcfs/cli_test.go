package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCLIBasics: version and help exit 0; a bad flag exits 2; flags may
// follow the mount point.
func TestCLIBasics(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if out, code := cli(t, nil, "", args...); code != 0 || !strings.HasPrefix(out, "mpcfs ") {
			t.Errorf("mpcfs %v: exit %d, %q", args, code, out)
		}
	}
	for _, args := range [][]string{{"--help"}, {"mount", "--help"}, {"tasks", "-h"}, {"init", "--help"}} {
		if out, code := cli(t, nil, "", args...); code != 0 || !strings.Contains(out, "usage") {
			t.Errorf("mpcfs %v: exit %d, %q", args, code, out)
		}
	}
	if out, code := cli(t, nil, "", "mount", "--no-such-flag", "/x"); code != 2 || !strings.Contains(out, "no-such-flag") {
		t.Errorf("a bad flag: exit %d, %q", code, out)
	}
	if _, code := cli(t, nil, "", "frobnicate"); code != 2 {
		t.Errorf("an unknown command: exit %d", code)
	}
	c, err := parseMountFlags([]string{"/mnt/x", "--region", "r9", "--allow-other", "--store", "/s", "--master-key-file", "/k"})
	if err != nil || c.Mountpoint != "/mnt/x" || c.Region != "r9" || !c.AllowOther || c.StoreDir != "/s" {
		t.Errorf("flags after the mount point: %+v %v", c, err)
	}
	if _, err := parseMountFlags([]string{"/a", "/b", "--store", "/s", "--master-key-file", "/k"}); err == nil {
		t.Errorf("two mount points accepted")
	}
}

// TestNoHome: with HOME unset (and no XDG folders) nothing is written to
// the current directory: the mount refuses, naming the flags to pass. The
// control: with HOME set, init makes the key under it.
func TestNoHome(t *testing.T) {
	cwd := t.TempDir()
	run := func(env []string, args ...string) (string, int) {
		cmd := execIn(cwd, env, args...)
		out, err := cmd.CombinedOutput()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return string(out), code
	}
	noHome := []string{"HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPCFS_MASTER_KEY_FILE"}
	out, code := run(noHome, "mount", mountDir(t))
	if code == 0 || !strings.Contains(out, "--master-key-file") {
		t.Errorf("mount without HOME: exit %d, %q", code, out)
	}
	out, code = run(noHome, "init", "--store", filepath.Join(t.TempDir(), "store"))
	if code == 0 || !strings.Contains(out, "--master-key-file") {
		t.Errorf("init without HOME: exit %d, %q", code, out)
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Errorf("without HOME, mpcfs wrote %v into the current directory", entries)
	}
	home := t.TempDir()
	out, code = run([]string{"XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPCFS_MASTER_KEY_FILE", "HOME=" + home}, "init")
	key := filepath.Join(home, ".config", "mpcfs", "master.key")
	if fi, err := os.Stat(key); code != 0 || err != nil || fi.Mode().Perm() != 0o600 || !strings.Contains(out, key) || !strings.Contains(out, "BACK IT UP") {
		t.Errorf("init with HOME: exit %d, %q, key %v", code, out, err)
	}
	if entries, _ := os.ReadDir(cwd); len(entries) != 0 {
		t.Errorf("init wrote %v into the current directory", entries)
	}
}

// TestMountpointChecks: a file, a non-empty folder and a mounted folder are
// refused with the reason, and leave no mount behind; --allow-non-empty
// (the control) mounts over the non-empty folder.
func TestMountpointChecks(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	base := []string{"--store", filepath.Join(dir, "store"), "--master-key-file", filepath.Join(dir, "master.key")}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	out, code := cli(t, nil, "", append([]string{"mount", file}, base...)...)
	if code == 0 || !strings.Contains(out, "not a directory") {
		t.Errorf("mount on a file: exit %d, %q", code, out)
	}
	if isMounted(file) {
		exec0("fusermount3", "-u", "-z", file)
		t.Errorf("a failed mount on a file left a mount behind")
	}
	if out, code := cli(t, nil, "", append([]string{"mount", filepath.Join(dir, "nope")}, base...)...); code == 0 || !strings.Contains(out, "does not exist") {
		t.Errorf("mount on a missing path: exit %d, %q", code, out)
	}

	full := mountDir(t)
	os.WriteFile(filepath.Join(full, "keep.txt"), []byte("x"), 0o600)
	out, code = cli(t, nil, "", append([]string{"mount", full}, base...)...)
	if code == 0 || !strings.Contains(out, "not empty") || !strings.Contains(out, "--allow-non-empty") {
		t.Errorf("mount on a non-empty folder: exit %d, %q", code, out)
	}
	cleanupMount(t, full)
	if out, code := cli(t, nil, "", append([]string{"mount", full, "--daemon", "--allow-non-empty"}, base...)...); code != 0 {
		t.Fatalf("--allow-non-empty: exit %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(full, "control", "encryptions")); err != nil {
		t.Errorf("--daemon returned before the mount was ready: %v", err)
	}
	out, code = cli(t, nil, "", append([]string{"mount", full, "--allow-non-empty"}, base...)...)
	if code == 0 || !strings.Contains(out, "already mounted") {
		t.Errorf("mount on a mounted folder: exit %d, %q", code, out)
	}
	exec0("fusermount3", "-u", full)
	waitMounted(t, full, false, 10*time.Second)
}

// TestSignals: SIGTERM with a file open on the mount unmounts (lazily)
// and exits; the open file then fails instead of hanging. Two SIGINTs in
// a row end the process at once.
func TestSignals(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	mnt := mountDir(t)
	cleanupMount(t, mnt)
	args := []string{mnt, "--store", filepath.Join(dir, "store"), "--master-key-file", filepath.Join(dir, "master.key")}
	fg := startForeground(t, nil, args...)
	waitMounted(t, mnt, true, 60*time.Second)
	held, err := os.Open(filepath.Join(mnt, "control", "cancel"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	// A shell sitting in the mount, too. t.Chdir puts the test process
	// back where it was when the test ends: later tests build and find
	// files relative to this package's folder.
	t.Chdir(mnt)
	fg.signal(syscall.SIGTERM)
	fg.waitExit(t, 30*time.Second)
	if isMounted(mnt) {
		t.Errorf("still mounted after SIGTERM with a file open:\n%s", fg.out.String())
	}
	if _, err := held.Read(make([]byte, 10)); err == nil {
		t.Errorf("the held file still reads after the mount is gone")
	}
	if err := os.Chdir("/"); err != nil { // leave the dead mount
		t.Fatal(err)
	}
	if !strings.Contains(fg.out.String(), "detaching lazily") {
		t.Errorf("no lazy unmount logged:\n%s", fg.out.String())
	}

	fg = startForeground(t, nil, args...)
	waitMounted(t, mnt, true, 60*time.Second)
	held2, err := os.Open(filepath.Join(mnt, "control", "cancel"))
	if err != nil {
		t.Fatal(err)
	}
	defer held2.Close()
	fg.signal(syscall.SIGINT)
	time.Sleep(100 * time.Millisecond)
	fg.signal(syscall.SIGINT)
	start := time.Now()
	if code := fg.waitExit(t, 10*time.Second); code == 0 || time.Since(start) > 5*time.Second {
		t.Errorf("second signal: exit %d after %v, want a prompt failure exit", code, time.Since(start))
	}
	waitMounted(t, mnt, false, 10*time.Second)
}

// TestSignalWhileMounting: SIGTERM at any moment of the start (here from
// at once to well after) ends the daemon within seconds and leaves no
// mount behind. Before signals were caught from the start, one landing
// while go-fuse held a file inside the new mount killed the process with
// it open, and the exit then waited for ever on its own mount.
func TestSignalWhileMounting(t *testing.T) {
	needFUSE(t)
	dir := t.TempDir()
	for i, delay := range []time.Duration{0, 2 * time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 100 * time.Millisecond, 300 * time.Millisecond} {
		mnt := filepath.Join(dir, fmt.Sprintf("mnt%d", i))
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		cleanupMount(t, mnt)
		fg := startForeground(t, nil, mnt, "--store", filepath.Join(dir, "store"), "--master-key-file", filepath.Join(dir, "master.key"))
		time.Sleep(delay)
		fg.signal(syscall.SIGTERM)
		fg.waitExit(t, 30*time.Second)
		if isMounted(mnt) {
			t.Errorf("SIGTERM %v after start: still mounted after exit:\n%s", delay, fg.out.String())
		}
	}
}
