package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Local is a Store over a local directory: each sub-folder is a bucket and
// each regular file below it an object whose key is its path relative to the
// bucket folder, with "/" separators.
//
// Folders whose names start with "." are not listed by Buckets (mpcfs keeps
// its own task store in ".mpcfs") but work normally when named explicitly.
//
// ETag is "<size>-<mtime ns>-<inode>" in hex: Put renames a new file into
// place, so every Put yields a new inode, and in-place edits by other programs
// change the size or mtime. It is cheap (no hashing of large media files).
type Local struct{ root string }

// tmpPrefix marks the temp file of a Put in progress; such files are never
// listed and keys may not use the prefix, so they cannot be addressed.
const tmpPrefix = ".mpcfs-tmp-"

// NewLocal opens the store folder dir, which must already exist (a typo in
// a path should be an error, not a silently created empty store).
func NewLocal(dir string) (*Local, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("local store: %s is not a folder", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	return &Local{root: abs}, nil
}

// checkBucket rejects names that are not exactly one folder below the root.
func checkBucket(b string) error {
	if b == "" || b == "." || b == ".." || strings.ContainsAny(b, "/\\\x00") {
		return fmt.Errorf("invalid bucket name %q", b)
	}
	return nil
}

// checkKey rejects keys that could leave their bucket folder or name a temp
// file: "", a leading "/", NUL, and "", "." or ".." segments.
func checkKey(key string) error {
	if key == "" || strings.HasPrefix(key, "/") || strings.ContainsRune(key, 0) {
		return fmt.Errorf("invalid object key %q", key)
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." || strings.HasPrefix(seg, tmpPrefix) {
			return fmt.Errorf("invalid object key %q: bad segment %q", key, seg)
		}
	}
	return nil
}

// bucketPath validates bucket and returns its folder.
func (l *Local) bucketPath(bucket string) (string, error) {
	if err := checkBucket(bucket); err != nil {
		return "", err
	}
	return filepath.Join(l.root, bucket), nil
}

// path validates bucket and key and returns the object's file.
func (l *Local) path(bucket, key string) (string, error) {
	bp, err := l.bucketPath(bucket)
	if err != nil {
		return "", err
	}
	if err := checkKey(key); err != nil {
		return "", err
	}
	return filepath.Join(bp, filepath.FromSlash(key)), nil
}

// notExist maps "no such file" (and "a parent is a file") to ErrNotExist,
// keeping the OS error visible.
func notExist(what string, err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return fmt.Errorf("%s: %w: %w", what, ErrNotExist, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// Buckets lists the non-hidden sub-folders (symlinks to folders included).
func (l *Local) Buckets(ctx context.Context) ([]string, error) {
	entries, err := os.ReadDir(l.root)
	if err != nil {
		return nil, fmt.Errorf("local store: %w", err)
	}
	names := []string{}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") && isDir(l.root, e) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// isDir follows a symlink so a linked bucket folder counts.
func isDir(parent string, e fs.DirEntry) bool {
	if e.Type()&fs.ModeSymlink == 0 {
		return e.IsDir()
	}
	st, err := os.Stat(filepath.Join(parent, e.Name()))
	return err == nil && st.IsDir()
}

// BucketExists reports whether the bucket folder exists.
func (l *Local) BucketExists(ctx context.Context, bucket string) (bool, error) {
	bp, err := l.bucketPath(bucket)
	if err != nil {
		return false, err
	}
	st, err := os.Stat(bp)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	return st.IsDir(), nil
}

// List returns the direct children of prefix. Like S3, a prefix with
// nothing under it is an empty listing, a missing bucket is ErrNotExist,
// and a prefix may end inside a name ("tasks/1" lists the names of tasks/
// that begin with "1": a large folder can be listed in parts at once).
func (l *Local) List(ctx context.Context, bucket, prefix string) (Listing, error) {
	folder, partial := prefix, ""
	if i := strings.LastIndex(prefix, "/"); i < len(prefix)-1 {
		folder, partial = prefix[:i+1], prefix[i+1:]
	}
	dir, err := l.prefixDir(bucket, folder)
	if err != nil {
		return Listing{}, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return l.listMissing(ctx, bucket, folder, err)
	}
	var out Listing
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), partial) {
			continue
		}
		switch sub, info := listed(dir, e); {
		case sub:
			out.Prefixes = append(out.Prefixes, folder+e.Name()+"/")
		case info != nil:
			out.Objects = append(out.Objects, objectInfo(folder+e.Name(), info))
		}
	}
	sort.Slice(out.Objects, func(i, j int) bool { return out.Objects[i].Key < out.Objects[j].Key })
	sort.Strings(out.Prefixes)
	return out, nil
}

// HasPrefix reports whether the prefix's folder holds an object or a
// sub-folder, reading its entries a few at a time (a huge folder is not
// read whole).
func (l *Local) HasPrefix(ctx context.Context, bucket, prefix string) (bool, error) {
	if prefix == "" {
		return false, fmt.Errorf("invalid prefix %q: HasPrefix needs a folder", prefix)
	}
	dir, err := l.prefixDir(bucket, prefix)
	if err != nil {
		return false, err
	}
	f, err := os.Open(dir)
	if err != nil {
		_, err = l.listMissing(ctx, bucket, prefix, err)
		return false, err
	}
	defer f.Close()
	for {
		entries, err := f.ReadDir(16)
		for _, e := range entries {
			if sub, info := listed(dir, e); sub || info != nil {
				return true, nil
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return false, nil
		case errors.Is(err, syscall.ENOTDIR):
			return false, nil // a file: nothing lies under it
		case err != nil:
			return false, fmt.Errorf("listing %s/%s: %w", bucket, prefix, err)
		}
	}
}

// listed says what List shows of the folder entry e: a sub-folder, an
// object (its file's info), or nothing (a temporary file, anything that
// is neither a folder nor a regular file). HasPrefix asks the same.
func listed(dir string, e fs.DirEntry) (folder bool, info os.FileInfo) {
	if strings.HasPrefix(e.Name(), tmpPrefix) {
		return false, nil
	}
	if isDir(dir, e) {
		return true, nil
	}
	if info, err := os.Stat(filepath.Join(dir, e.Name())); err == nil && info.Mode().IsRegular() {
		return false, info
	}
	return false, nil
}

// prefixDir validates a List prefix and returns its folder.
func (l *Local) prefixDir(bucket, prefix string) (string, error) {
	if prefix == "" {
		return l.bucketPath(bucket)
	}
	if !strings.HasSuffix(prefix, "/") {
		return "", fmt.Errorf("invalid prefix %q: must be empty or end in \"/\"", prefix)
	}
	return l.path(bucket, strings.TrimSuffix(prefix, "/"))
}

// listMissing decides between "empty prefix" and "missing bucket".
func (l *Local) listMissing(ctx context.Context, bucket, prefix string, err error) (Listing, error) {
	err = notExist(bucket+"/"+prefix, err)
	if prefix == "" || !errors.Is(err, ErrNotExist) {
		return Listing{}, err
	}
	if ok, berr := l.BucketExists(ctx, bucket); berr != nil || !ok {
		return Listing{}, err
	}
	return Listing{}, nil
}

// objectInfo builds the ObjectInfo; see Local for the ETag recipe.
func objectInfo(key string, info os.FileInfo) ObjectInfo {
	var ino uint64
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	etag := fmt.Sprintf("%x-%x-%x", info.Size(), info.ModTime().UnixNano(), ino)
	return ObjectInfo{Key: key, Size: info.Size(), ETag: etag, ModTime: info.ModTime()}
}

// Stat describes one object; folders are not objects.
func (l *Local) Stat(ctx context.Context, bucket, key string) (ObjectInfo, error) {
	p, err := l.path(bucket, key)
	if err != nil {
		return ObjectInfo{}, err
	}
	info, err := os.Stat(p)
	if err != nil {
		return ObjectInfo{}, notExist(bucket+"/"+key, err)
	}
	if !info.Mode().IsRegular() {
		return ObjectInfo{}, fmt.Errorf("%s/%s: not a file: %w", bucket, key, ErrNotExist)
	}
	return objectInfo(key, info), nil
}

// Open reads [off, off+length) of the object (length < 0: to the end). The
// range is clipped at the end of the file, as an S3 ranged GET would be.
func (l *Local) Open(ctx context.Context, bucket, key string, off, length int64) (io.ReadCloser, error) {
	return l.OpenMatch(ctx, bucket, key, "", off, length)
}

// OpenMatch is Open on condition that the opened file's ETag (see Local) is
// etag; it is checked on the open descriptor, so the bytes read are those of
// that version unless another program rewrites the file in place meanwhile.
func (l *Local) OpenMatch(ctx context.Context, bucket, key, etag string, off, length int64) (io.ReadCloser, error) {
	p, err := l.path(bucket, key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, notExist(bucket+"/"+key, err)
	}
	info, err := f.Stat()
	if err == nil && !info.Mode().IsRegular() {
		err = fmt.Errorf("not a file: %w", ErrNotExist)
	}
	if err == nil && etag != "" {
		if now := objectInfo(key, info).ETag; now != etag {
			err = fmt.Errorf("%w: ETag %s, expected %s", ErrChanged, now, etag)
		}
	}
	if err == nil && (off < 0 || off > info.Size()) {
		err = fmt.Errorf("offset %d outside the object (%d bytes)", off, info.Size())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, err)
	}
	if length < 0 || off+length > info.Size() {
		length = info.Size() - off
	}
	return &sectionCloser{Reader: io.NewSectionReader(f, off, length), f: f, etag: objectInfo(key, info).ETag, n: length}, nil
}

// sectionCloser closes the file under a section reader.
type sectionCloser struct {
	io.Reader
	f    *os.File
	etag string
	n    int64
}

func (s *sectionCloser) ETag() string  { return s.etag }
func (s *sectionCloser) Length() int64 { return s.n }

func (s *sectionCloser) Close() error { return s.f.Close() }

// Put writes the object atomically (temp file in the same folder, synced,
// then renamed), so readers never see a half-written object. Missing folders,
// including the bucket's, are created.
func (l *Local) Put(ctx context.Context, bucket, key string, data []byte) error {
	p, err := l.path(bucket, key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("writing %s/%s: %w", bucket, key, err)
	}
	if err := writeAtomic(p, data); err != nil {
		return fmt.Errorf("writing %s/%s: %w", bucket, key, err)
	}
	return nil
}

// PutMatch is Put on condition that the object's ETag is etag ("": that it
// does not exist). The check and the rename are made under an exclusive
// flock(2) of a lock file in the object's folder, so writers in this and
// other processes on this machine take turns; the rename gives the object
// a new inode, hence a new ETag.
func (l *Local) PutMatch(ctx context.Context, bucket, key string, data []byte, etag string) (string, error) {
	p, err := l.path(bucket, key)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	what := bucket + "/" + key
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("writing %s: %w", what, err)
	}
	unlock, err := lockFolder(filepath.Dir(p))
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", what, err)
	}
	defer unlock()
	cur := ""
	if info, err := os.Stat(p); err == nil {
		cur = objectInfo(key, info).ETag
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("writing %s: %w", what, err)
	}
	if cur != etag {
		if etag == "" {
			return "", fmt.Errorf("writing %s: %w: it exists", what, ErrChanged)
		}
		return "", fmt.Errorf("writing %s: %w: ETag %q, expected %q", what, ErrChanged, cur, etag)
	}
	if err := writeAtomic(p, data); err != nil {
		return "", fmt.Errorf("writing %s: %w", what, err)
	}
	info, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("writing %s: %w", what, err)
	}
	return objectInfo(key, info).ETag, nil
}

// lockFolder takes the exclusive flock of dir's lock file (a temp-prefixed
// name: never listed, never an object) and returns its release.
func lockFolder(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, tmpPrefix+"lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// writeAtomic writes data to a temp file next to p and renames it onto p.
func writeAtomic(p string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(p), tmpPrefix)
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	_, err = io.Copy(tmp, bytes.NewReader(data))
	if err == nil {
		// The exact clock, not the file system's coarse one: the ETag
		// (size, mtime, inode) must differ from a previous version's even
		// when the freed inode number is reused within one clock tick.
		now := time.Now()
		err = os.Chtimes(tmp.Name(), now, now)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), p)
}

// Delete removes an object; a missing one is not an error. Folders are left
// alone (they are not objects).
func (l *Local) Delete(ctx context.Context, bucket, key string) error {
	p, err := l.path(bucket, key)
	if err != nil {
		return err
	}
	info, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) || (err == nil && info.IsDir()) {
		return nil
	}
	if err == nil {
		err = os.Remove(p)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting %s/%s: %w", bucket, key, err)
	}
	return nil
}

var _ Store = (*Local)(nil)
