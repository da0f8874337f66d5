// Package store is mpcfs's view of an S3-compatible object store: a small
// interface (Store) with two implementations, one over minio-go for MinIO,
// AWS S3 and Huawei OBS, and one over a local directory whose sub-folders are
// buckets (the embedded default).
//
// Everything above this package (the FUSE layer, the task manager) talks to a
// Store only, so both backends behave the same to users and tests.
package store

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotExist is returned (possibly wrapped) when a bucket or object does not
// exist. Test with errors.Is.
var ErrNotExist = errors.New("does not exist")

// ErrChanged is returned (possibly wrapped) by OpenMatch when the object no
// longer has the ETag the caller recorded: its content changed since. Callers
// that laid out output from the old version must not mix in new bytes.
var ErrChanged = errors.New("object changed")

// ErrUnavailable wraps errors that mean the store could not be reached (network
// down, server stopped), as opposed to a definite answer from it.
var ErrUnavailable = errors.New("store unavailable")

// Answer is implemented by the readers Open and OpenMatch return: what
// the store's response said of the bytes it carries. A reader of an
// unconditional GET that checks ETag against a version it recorded has
// the guarantee OpenMatch gives (one response carries one version).
type Answer interface {
	// ETag is the version of the object the bytes come from.
	ETag() string
	// Length is how many bytes the response carries (a range past the
	// end of the object is cut to it); -1 if the store did not say.
	Length() int64
}

// AnswerOf returns what the response behind a reader from Open said, or
// false when the reader does not tell (a wrapper that hides it).
func AnswerOf(rc io.Reader) (etag string, length int64, ok bool) {
	a, ok := rc.(Answer)
	if !ok {
		return "", -1, false
	}
	return a.ETag(), a.Length(), true
}

// ObjectInfo describes one object.
type ObjectInfo struct {
	Key     string    // full key inside the bucket, no leading "/"
	Size    int64     // exact size in bytes
	ETag    string    // opaque version tag; changes when the content changes
	ModTime time.Time // last modification
}

// Listing is the immediate content of one "folder" (prefix) of a bucket.
type Listing struct {
	Objects  []ObjectInfo // objects directly under the prefix, Key is the full key
	Prefixes []string     // sub-prefixes directly under it, full, each ending in "/"
}

// Store is an S3-compatible object store.
//
// Keys never start with "/"; prefixes passed to List are "" (bucket root) or
// end with "/". Implementations are safe for concurrent use.
type Store interface {
	// Buckets lists the bucket names, sorted.
	Buckets(ctx context.Context) ([]string, error)
	// BucketExists reports whether the bucket exists.
	BucketExists(ctx context.Context, bucket string) (bool, error)
	// List returns the objects and sub-prefixes directly under prefix
	// (which, as in S3, may end inside a name: "a/b" lists a/b.ts and
	// a/b/, not a/c.ts).
	List(ctx context.Context, bucket, prefix string) (Listing, error)
	// HasPrefix reports whether anything lies under prefix (which ends in
	// "/"): one listing of at most one key, however large the folder.
	HasPrefix(ctx context.Context, bucket, prefix string) (bool, error)
	// Stat describes one object; ErrNotExist if it is missing.
	Stat(ctx context.Context, bucket, key string) (ObjectInfo, error)
	// Open reads length bytes of the object from offset off (length < 0: to
	// the end) as one ranged request. The caller closes the reader.
	Open(ctx context.Context, bucket, key string, off, length int64) (io.ReadCloser, error)
	// OpenMatch is Open on condition that the object's ETag is still etag
	// (HTTP If-Match): ErrChanged if it is not, ErrNotExist if the object
	// is gone. An empty etag means no condition.
	OpenMatch(ctx context.Context, bucket, key, etag string, off, length int64) (io.ReadCloser, error)
	// Put stores a whole object (used for the task store).
	Put(ctx context.Context, bucket, key string, data []byte) error
	// PutMatch is a compare-and-swap Put: it stores the object on
	// condition that its ETag is still etag (HTTP If-Match), or, with etag
	// "", that it does not exist (If-None-Match: *). It returns the new
	// ETag; ErrChanged (the object was written or created by someone else
	// meanwhile) leaves the object as it is.
	PutMatch(ctx context.Context, bucket, key string, data []byte, etag string) (string, error)
	// Delete removes an object; deleting a missing object is not an error.
	Delete(ctx context.Context, bucket, key string) error
}
