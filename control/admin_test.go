package control

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mpcfs/mpcfs/crypto/keywrap"
)

// TestOpenMasterKeyUpgrade: a store made before key check values (tasks,
// no keycheck.json) is checked against its first task: the right key is
// accepted and gets a check value, another key and a missing key file are
// refused (the controls), and no key file is created for a store that
// has tasks.
func TestOpenMasterKeyUpgrade(t *testing.T) {
	st := taskStore(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "master.key")
	master, err := keywrap.Create(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newTestManager(t, st, master, -1)
	id := createID(t, m, "a.json")
	waitStatus(t, m, id, Succeeded)
	m.Close()
	ctx := context.Background()
	if cv, _ := readKeyCheck(ctx, st, ".mpcfs"); cv != "" {
		t.Fatalf("a check value before OpenMasterKey ran")
	}

	other := filepath.Join(dir, "other.key")
	keywrap.Create(other)
	if _, err := OpenMasterKey(ctx, st, ".mpcfs", other); err == nil || !strings.Contains(err.Error(), other) {
		t.Errorf("another key: %v", err)
	}
	lost := filepath.Join(dir, "lost.key")
	if _, err := OpenMasterKey(ctx, st, ".mpcfs", lost); err == nil || !strings.Contains(err.Error(), "restore") {
		t.Errorf("a missing key file: %v", err)
	}
	if _, err := os.Stat(lost); err == nil {
		t.Errorf("a key file was created for a store with tasks")
	}
	res, err := OpenMasterKey(ctx, st, ".mpcfs", keyFile)
	if err != nil || res.Created {
		t.Fatalf("the right key: %+v %v", res, err)
	}
	if cv, _ := readKeyCheck(ctx, st, ".mpcfs"); cv == "" || !master.Verify(cv) {
		t.Errorf("no check value recorded")
	}

	// Rekey to the other key: the task opens with it, the record keeps
	// its fields, and running it again skips it.
	nw, _ := keywrap.Load(other)
	if n, skipped, err := Rekey(ctx, st, ".mpcfs", master, nw); err != nil || n != 1 || skipped != 0 {
		t.Fatalf("rekey: %d %d %v", n, skipped, err)
	}
	if n, skipped, err := Rekey(ctx, st, ".mpcfs", master, nw); err != nil || n != 0 || skipped != 1 {
		t.Errorf("rekey again: %d %d %v", n, skipped, err)
	}
	stranger, _ := keywrap.New(make([]byte, 32))
	if _, _, err := Rekey(ctx, st, ".mpcfs", stranger, stranger); err == nil {
		t.Errorf("rekey from a key that is not the store's was accepted")
	}
	m2, lb := newTestManager(t, st, nw, -1)
	waitStatus(t, m2, id, Succeeded)
	if strings.Contains(lb.String(), "does not open") {
		t.Errorf("after rekey the task's key does not open:\n%s", lb.String())
	}
	tasks, err := ListTasks(ctx, st, ".mpcfs", TaskFilter{Status: Succeeded})
	if err != nil || len(tasks) != 1 || tasks[0].TaskID != id || tasks[0].Output.Bucket == "" {
		t.Errorf("ListTasks: %+v %v", tasks, err)
	}
	if tasks, _ := ListTasks(ctx, st, ".mpcfs", TaskFilter{Status: Failed}); len(tasks) != 0 {
		t.Errorf("ListTasks FAILED: %+v", tasks)
	}
}
