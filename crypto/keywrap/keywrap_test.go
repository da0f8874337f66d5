package keywrap

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSealOpenRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "master.key")
	m, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("master key file mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}
	key := []byte("0123456789abcdef")
	sealed := m.Seal(key, "42")
	if strings.Contains(sealed, string(key)) {
		t.Fatal("sealed text contains the key")
	}
	m2, err := LoadOrCreate(path) // reload: same master key
	if err != nil {
		t.Fatal(err)
	}
	got, err := m2.Open(sealed, "42")
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := m2.Open(sealed, "43"); err == nil {
		t.Fatal("a key sealed for task 42 opened for task 43")
	}
}

func TestWrongMasterKeyFails(t *testing.T) {
	dir := t.TempDir()
	a, _ := LoadOrCreate(filepath.Join(dir, "a"))
	b, _ := LoadOrCreate(filepath.Join(dir, "b"))
	if _, err := b.Open(a.Seal([]byte("0123456789abcdef"), "1"), "1"); err == nil {
		t.Fatal("opened with another master key")
	}
}

func TestLooseModeRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master.key")
	if _, err := LoadOrCreate(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("LoadOrCreate on a 0644 file: %v", err)
	}
}

// TestCheckValue: a check value verifies with its own key only, and Create
// never overwrites a key file.
func TestCheckValue(t *testing.T) {
	dir := t.TempDir()
	a, err := Create(filepath.Join(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Create(filepath.Join(dir, "b"))
	cv := a.CheckValue()
	if !a.Verify(cv) {
		t.Error("a check value does not verify with its key")
	}
	if b.Verify(cv) {
		t.Error("a check value verifies with another key")
	}
	if _, err := a.Open(cv, "1234567890123456"); err == nil {
		t.Error("a check value opens as a task's sealed key")
	}
	if _, err := Create(filepath.Join(dir, "a")); err == nil {
		t.Error("Create overwrote a key file")
	}
	if again, err := Load(filepath.Join(dir, "a")); err != nil || !again.Verify(cv) {
		t.Errorf("Load: %v", err)
	}
}
