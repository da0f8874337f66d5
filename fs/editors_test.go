package fs_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mpcfs/mpcfs/control"
)

// TestEditors: the tools admins use on control/ each submit exactly one task
// per request written, or fail with a clear errno, over a real MinIO: cp,
// tee, echo >, cat >>, mv (across and within the mount), dd conv=fsync,
// sed -i (write-temp-then-rename), vim (swap file, 4913 probe, backup
// rename, fsync) and nano. A rejected request fails close(2) with EINVAL
// and its 400 body is read back; saving a response back unchanged submits
// nothing. Negative controls: the bad request, the append to a response,
// the changed response saved by vim and sed.
func TestEditors(t *testing.T) {
	srv, _ := minioLadder(t)
	need(t, "vim (apt-get install vim)", haveCmd("vim"))
	f := newFixture(t, srv.Store(), "mpcfs-system")
	enc := f.path("control", "encryptions")
	work := t.TempDir()
	good, _ := json.Marshal(validRequest())
	bad := edit(func(r map[string]any) { hlsEnc(r)["algorithm"] = "AES-256-GCM" })
	goodFile, badFile := filepath.Join(work, "good.json"), filepath.Join(work, "bad.json")
	os.WriteFile(goodFile, good, 0o600)
	os.WriteFile(badFile, bad, 0o600)

	tasks := func() int { return len(f.mgr.TaskIDs()) }
	run := func(name string, wantOK bool, wantNew int, script string) string {
		t.Helper()
		before := tasks()
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = enc
		cmd.Env = append(os.Environ(), "HOME="+work, "TERM=xterm", "GOOD="+goodFile, "BAD="+badFile)
		out, err := cmd.CombinedOutput()
		if (err == nil) != wantOK {
			t.Errorf("%s: exit %v, want success %v:\n%s", name, err, wantOK, out)
		}
		if got := tasks() - before; got != wantNew {
			t.Errorf("%s: %d tasks submitted, want %d", name, got, wantNew)
		}
		return string(out)
	}
	response := func(name string) map[string]string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(enc, name))
		var r map[string]string
		if err != nil || json.Unmarshal(b, &r) != nil {
			t.Errorf("%s: response %q (%v)", name, b, err)
		}
		return r
	}
	accepted := func(name string) {
		t.Helper()
		if r := response(name); r["task_id"] == "" {
			t.Errorf("%s reads %v, want a task_id", name, r)
		}
	}

	run("cp", true, 1, `cp "$GOOD" cp.json`)
	accepted("cp.json")
	out := run("cp of a bad request", false, 0, `cp "$BAD" cpbad.json`)
	if !strings.Contains(out, "Invalid argument") {
		t.Errorf("cp of a bad request says %q, want Invalid argument", out)
	}
	if r := response("cpbad.json"); r["error_code"] != control.CodeBadRequest {
		t.Errorf("the 400 body of a rejected cp: %v", r)
	}
	run("tee", true, 1, `tee tee.json < "$GOOD" >/dev/null`)
	accepted("tee.json")
	run("echo >", true, 1, `echo "$(cat "$GOOD")" > echo.json`)
	accepted("echo.json")
	run("cat >> a new file", true, 1, `cat "$GOOD" >> append.json`)
	accepted("append.json")
	run("cat >> a response", false, 0, `cat "$GOOD" >> append.json`)
	if r := response("append.json"); r["error_code"] == "" {
		t.Errorf("appending to a response: %v, want a 400 body", r)
	}
	run("mv from another filesystem", true, 1, `cp "$GOOD" "$HOME/mv.json" && mv "$HOME/mv.json" mv.json`)
	accepted("mv.json")
	run("mv within control/encryptions", true, 0, `mv mv.json moved.json && ! test -e mv.json`)
	accepted("moved.json")
	run("dd conv=fsync", true, 1, `dd if="$GOOD" of=dd.json conv=fsync status=none`)
	accepted("dd.json")

	// sed -i writes a temporary file next to the target and renames it.
	run("sed -i on a draft, then mv to *.json", true, 1, `cp "$GOOD" draft && sed -i 's/"out"/"sedout"/' draft && mv draft sed.json`)
	accepted("sed.json")
	run("sed -i changing nothing", true, 0, `sed -i 's/no such text//' sed.json`)
	accepted("sed.json")
	run("sed -i changing a response", false, 0, `sed -i 's/task_id/taskid/' sed.json`)

	// vim: swap file and 4913 probe in the folder, fsync, backup by rename.
	vim := `vim -Nu NONE -i NONE -es `
	run("vim writes a new request", true, 1, vim+`-c 'call setline(1, readfile($GOOD))' -c wq vim.json`)
	accepted("vim.json")
	run("vim :wq of a response", true, 0, vim+`-c wq vim.json`)
	accepted("vim.json")
	run("vim replaces a response with a new request", true, 1, vim+`-c '%d' -c 'call setline(1, readfile($GOOD))' -c wq vim.json`)
	accepted("vim.json")
	run("vim saves a bad request", false, 0, vim+`-c '%d' -c 'call setline(1, readfile($BAD))' -c wq vim.json`)
	if r := response("vim.json"); r["error_code"] == "" {
		t.Errorf("vim's bad request: %v", r)
	}
	if haveCmd("nano") && haveCmd("script") {
		// nano wants a terminal: script gives it one; keys, once nano is
		// up: the request, ^O Enter (write), ^X (exit).
		run("nano", true, 1, `(sleep 2; printf '%s' "$(cat "$GOOD")"; sleep 1; printf '\017'; sleep 1; printf '\r'; sleep 1; printf '\030'; sleep 2) |
			TERM=xterm timeout 60 script -qec 'nano --ignorercfiles nano.json' /dev/null >/dev/null`)
		accepted("nano.json")
	} else {
		need(t, "nano and script", false)
	}
	entries, _ := os.ReadDir(enc)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			t.Errorf("left behind in control/encryptions: %s", e.Name())
		}
	}

	// control/cancel: dd conv=fsync and vim (which keeps the read-back
	// lines and adds an id) cancel; an unknown id fails.
	ids := f.mgr.TaskIDs()
	run("dd conv=fsync to cancel", true, 0, `echo `+ids[0]+` | dd of=../cancel conv=fsync status=none`)
	run("dd of an unknown id to cancel", false, 0, `echo 1234567890123456 | dd of=../cancel conv=fsync status=none`)
	run("vim adds an id to cancel", true, 0, vim+`-c '$put =\"`+ids[1]+`\"' -c wq ../cancel`)
	for _, id := range ids[:2] {
		if v := f.wait(id); v.Status != control.Canceled {
			t.Errorf("task %s after cancel: %s", id, v.Status)
		}
	}
}

// TestTaskTimesAndStatfs: task files carry the task's times (ls -t, find
// -newer work) and statfs gives usable numbers.
func TestTaskTimesAndStatfs(t *testing.T) {
	srv, _ := minioLadder(t)
	f := newFixture(t, srv.Store(), "mpcfs-system")
	first := f.create("a.json", validRequest())
	f.wait(first)
	time.Sleep(1100 * time.Millisecond) // MPC times have whole seconds
	mark := filepath.Join(t.TempDir(), "mark")
	os.WriteFile(mark, nil, 0o600)
	time.Sleep(1100 * time.Millisecond)
	second := f.create("b.json", validRequest())
	f.wait(second)
	fi, err := os.Stat(f.path("control", "tasks", first+".json"))
	if err != nil || time.Since(fi.ModTime()) > time.Minute || fi.ModTime().Year() < 2000 {
		t.Errorf("task file mtime %v (%v), want the task's end time", fi.ModTime(), err)
	}
	out, err := exec.Command("find", f.path("control", "tasks"), "-type", "f", "-newer", mark).CombinedOutput()
	if err != nil || !strings.Contains(string(out), second) || strings.Contains(string(out), first) {
		t.Errorf("find -newer lists %q (%v), want only %s", out, err, second)
	}
	out, _ = exec.Command("ls", "-t", f.path("control", "tasks")).CombinedOutput()
	if names := strings.Fields(string(out)); len(names) != 2 || names[0] != second+".json" {
		t.Errorf("ls -t: %q, want %s first", out, second)
	}
	for _, p := range []string{f.mnt, f.path("control", "encryptions"), f.path("buckets", "media", "vod")} {
		var s syscall.Statfs_t
		if err := syscall.Statfs(p, &s); err != nil || s.Namelen != 255 || s.Blocks == 0 || s.Bsize == 0 {
			t.Errorf("statfs %s: %+v %v", p, s, err)
		}
	}
}
