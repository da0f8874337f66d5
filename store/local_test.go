package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newLocal(t *testing.T) (*Local, string) {
	dir := t.TempDir()
	l, err := NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	return l, dir
}

// TestLocalTraversal: no key or bucket name may reach outside its folder.
func TestLocalTraversal(t *testing.T) {
	l, dir := newLocal(t)
	ctx := context.Background()
	os.WriteFile(filepath.Join(dir, "secret"), []byte("x"), 0o600)
	badKeys := []string{"", "..", "../secret", "a/../../secret", "./a", "a/./b", "a//b", "a/", "/etc/passwd", "a/..", "a\x00b", tmpPrefix + "x"}
	for _, k := range badKeys {
		errs := map[string]error{"Put": l.Put(ctx, "b", k, []byte("x")), "Delete": l.Delete(ctx, "b", k)}
		_, errs["Stat"] = l.Stat(ctx, "b", k)
		_, errs["Open"] = l.Open(ctx, "b", k, 0, -1)
		for op, err := range errs {
			if err == nil || errors.Is(err, ErrNotExist) {
				t.Errorf("%s(%q) = %v, want a rejection", op, k, err)
			} else if k != "" && !strings.ContainsRune(k, 0) && !strings.Contains(err.Error(), k) {
				t.Errorf("%s(%q) error does not name the key: %v", op, k, err)
			}
		}
	}
	for _, p := range []string{"../", "a/../../", "/", "a/../x", "../se"} {
		if _, err := l.List(ctx, "b", p); err == nil || errors.Is(err, ErrNotExist) {
			t.Errorf("List(b, %q) = %v, want a rejection", p, err)
		}
	}
	// A prefix ending inside a name only filters the folder's names.
	for _, p := range []string{"..", ".", "se"} {
		if l, err := l.List(ctx, "b", p); err != nil || len(l.Objects)+len(l.Prefixes) != 0 {
			t.Errorf("List(b, %q) = %+v, %v; want nothing", p, l, err)
		}
	}
	for _, b := range []string{"", ".", "..", "a/b", `a\b`, "../b"} {
		if err := l.Put(ctx, b, "k", []byte("x")); err == nil {
			t.Errorf("Put into bucket %q accepted", b)
		}
		if _, err := l.List(ctx, b, ""); err == nil {
			t.Errorf("List of bucket %q accepted", b)
		}
		if _, err := l.BucketExists(ctx, b); err == nil {
			t.Errorf("BucketExists(%q) accepted", b)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "secret")); string(data) != "x" {
		t.Errorf("file outside the bucket changed: %q", data)
	}
}

// TestLocalHidden: temp files of a Put in progress and hidden buckets are
// not listed, but the hidden bucket works by name.
func TestLocalHidden(t *testing.T) {
	l, dir := newLocal(t)
	ctx := context.Background()
	os.WriteFile(filepath.Join(dir, "b", tmpPrefix+"123"), []byte("partial"), 0o600)
	os.WriteFile(filepath.Join(dir, "b", "real"), []byte("r"), 0o600)
	os.WriteFile(filepath.Join(dir, "not-a-bucket"), []byte("f"), 0o600)
	if err := l.Put(ctx, ".mpcfs", "tasks/t1.json", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	ls, err := l.List(ctx, "b", "")
	if err != nil || len(ls.Objects) != 1 || ls.Objects[0].Key != "real" || len(ls.Prefixes) != 0 {
		t.Errorf("List = %+v, %v; want only real", ls, err)
	}
	bs, err := l.Buckets(ctx)
	if err != nil || len(bs) != 1 || bs[0] != "b" {
		t.Errorf("Buckets = %q, %v; want [b]", bs, err)
	}
	if fi, err := l.Stat(ctx, ".mpcfs", "tasks/t1.json"); err != nil || fi.Size != 2 {
		t.Errorf("Stat in .mpcfs = %+v, %v", fi, err)
	}
	if err := l.Delete(ctx, ".mpcfs", "tasks/t1.json"); err != nil {
		t.Fatal(err)
	}
	if err := l.Delete(ctx, "b", "real/under-a-file"); err != nil {
		t.Errorf("Delete under a file: %v", err)
	}
}

func TestNewLocalMissing(t *testing.T) {
	if _, err := NewLocal(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Error("NewLocal of a missing folder succeeded")
	}
}
