// Package keywrap keeps content keys secret at rest: a task's key is only
// ever stored sealed with AES-256-GCM under a master key, with the task id as
// additional data so a sealed key cannot be moved to another task.
//
// The master key lives in a file of its own (mode 0600), created on first
// use, outside the mount and outside the object store.
package keywrap

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// MasterKeySize is the size of the master key (AES-256).
const MasterKeySize = 32

// Master seals and opens content keys.
type Master struct{ aead cipher.AEAD }

// New makes a Master from raw key bytes.
func New(key []byte) (*Master, error) {
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", MasterKeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Master{aead: aead}, nil
}

// LoadOrCreate reads the master key file (32 raw bytes), creating it with
// fresh random bytes and mode 0600 when it does not exist. A file readable by
// group or others is refused: it would leak every task key.
func LoadOrCreate(path string) (*Master, error) {
	key, err := readKeyFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err = createKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	return New(key)
}

func readKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("master key file %s has mode %v: it must not be readable by group or others (chmod 600)", path, st.Mode().Perm())
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(key) != MasterKeySize {
		return nil, fmt.Errorf("master key file %s holds %d bytes, want %d", path, len(key), MasterKeySize)
	}
	return key, nil
}

func createKeyFile(path string) ([]byte, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	key := make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) { // another mount created it first
		return readKeyFile(path)
	}
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(key); err != nil {
		f.Close()
		return nil, err
	}
	return key, f.Close()
}

// Seal wraps a content key for the task id; the result is base64 text.
func (m *Master) Seal(key []byte, taskID string) string {
	nonce := make([]byte, m.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("keywrap: no randomness: " + err.Error())
	}
	sealed := m.aead.Seal(nonce, nonce, key, []byte(taskID))
	return base64.StdEncoding.EncodeToString(sealed)
}

// Open unwraps a key sealed for taskID. It fails if the master key differs,
// the text was altered, or it was sealed for another task.
func (m *Master) Open(sealed, taskID string) ([]byte, error) {
	raw, err := base64.StdEncoding.DecodeString(sealed)
	n := m.aead.NonceSize()
	if err != nil || len(raw) < n {
		return nil, errors.New("sealed key is malformed")
	}
	key, err := m.aead.Open(nil, raw[:n], raw[n:], []byte(taskID))
	if err != nil {
		return nil, errors.New("sealed key does not open with this master key (wrong master key file?)")
	}
	return key, nil
}

// checkAD is the additional data of a key check value: it can never be
// mistaken for (or swapped with) a task's sealed key.
const checkAD = "mpcfs master key check value"

// CheckValue is a key check value: an authentication tag that only this
// master key verifies (Verify), kept in the task store so a mount with
// another key refuses to start. It tells nothing about the key.
func (m *Master) CheckValue() string { return m.Seal(nil, checkAD) }

// Verify reports whether cv was made by CheckValue of this master key.
func (m *Master) Verify(cv string) bool {
	_, err := m.Open(cv, checkAD)
	return err == nil
}

// Exists reports whether the master key file exists.
func Exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Create makes a new master key file (mode 0600); it fails if the file
// exists, so a key is never overwritten.
func Create(path string) (*Master, error) {
	if Exists(path) {
		return nil, fmt.Errorf("master key file %s already exists", path)
	}
	key, err := createKeyFile(path)
	if err != nil {
		return nil, err
	}
	return New(key)
}

// Load reads an existing master key file (see LoadOrCreate for its rules).
func Load(path string) (*Master, error) {
	key, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	return New(key)
}
