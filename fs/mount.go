// Package fs is mpcfs's FUSE layer (go-fuse v2):
//
//	MOUNT/buckets/<bucket>/<key...>   store objects, plus the outputs of
//	                                  SUCCEEDED tasks, encrypted as read
//	MOUNT/control/encryptions/*.json  write a request, read its response
//	MOUNT/control/tasks/<id>.json     query a task
//	MOUNT/control/cancel              write task ids to cancel them
//
// Nodes are made on lookup from the store and the task manager; nothing is
// copied. Outputs are deterministic, so their page cache is kept across opens
// (FOPEN_KEEP_CACHE) and their inode numbers change when their content does.
package fs

import (
	"context"
	"errors"
	"log"
	"os"
	"strings"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/store"
	"github.com/mpcfs/mpcfs/tuning"
)

// Options configure a mount.
type Options struct {
	Store      store.Store
	Manager    *control.Manager
	SysBucket  string // hidden from buckets/
	AllowOther bool   // let other users read buckets/ (control/ stays owner-only)
	OthersSee  string // with AllowOther: OthersSeeOutputs (default) or OthersSeeAll
	Debug      bool
	Log        *log.Logger
	// Tuning: EntryTTL, OutputEntryTTL, StoreTimeout, WarmAfter, WarmLead,
	// ReadAheadKB (zero: tuning.Default()). Names and attributes of store
	// objects are trusted briefly, so new objects and outputs show up at
	// once; content is cached longer through KEEP_CACHE, made safe by
	// content-derived inode numbers. Outputs' entries live long: an output
	// never changes under its inode, and a withdrawn or replaced one is
	// invalidated at once (rootNode.forget), so a warm re-read of a
	// segment costs no lookup or getattr round trip, only open and close.
	Tuning tuning.Tuning
}

// Mount mounts mpcfs at dir and returns the serving FUSE server.
func Mount(dir string, o Options) (*fuse.Server, error) {
	if o.Log == nil {
		o.Log = log.New(os.Stderr, "mpcfs: ", log.LstdFlags)
	}
	o.Tuning = tuning.OrDefault(o.Tuning)
	ttl, neg := o.Tuning.EntryTTL, time.Duration(0)
	root := &rootNode{opts: &o}
	o.Manager.Outputs().OnWithdraw(root.forget)
	server, err := fusefs.Mount(dir, root, &fusefs.Options{
		EntryTimeout:    &ttl,
		AttrTimeout:     &ttl,
		NegativeTimeout: &neg, // a task's outputs must appear at once
		UID:             uint32(os.Getuid()),
		GID:             uint32(os.Getgid()),
		MountOptions: fuse.MountOptions{
			FsName:        "mpcfs",
			Name:          "mpcfs",
			AllowOther:    o.AllowOther,
			MaxWrite:      1 << 20, // also the largest read request
			MaxReadAhead:  1 << 20,
			DisableXAttrs: true,
			// Every reply is made in memory (we never hand go-fuse a file
			// descriptor), so its splice path would only cost a pipe write
			// and drain per read before falling back to writev.
			DisableSplice: true,
			// The kernel checks mode bits: control/ stays owner-only even
			// with --allow-other.
			Options: []string{"default_permissions"},
			Debug:   o.Debug,
			Logger:  o.Log,
		},
	})
	if err == nil && o.Tuning.ReadAheadKB > 0 {
		if err := SetReadAhead(dir, o.Tuning.ReadAheadKB); err != nil {
			o.Log.Printf("kernel read-ahead stays at its default: %v", err)
		}
	}
	return server, err
}

// rootNode holds the two fixed folders.
type rootNode struct {
	fusefs.Inode
	readOnlyDir
	opts *Options
}

var _ fusefs.NodeOnAdder = (*rootNode)(nil)

func (r *rootNode) OnAdd(ctx context.Context) {
	buckets := r.NewPersistentInode(ctx, &bucketsNode{opts: r.opts}, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: 2})
	r.AddChild("buckets", buckets, false)
	ctl := r.NewPersistentInode(ctx, newControlNode(r.opts), fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: 3})
	r.AddChild("control", ctl, false)
}

// forget drops the kernel's cached names along buckets/bucket/key, so a
// withdrawn output (and folders left empty) vanish at once, not after the
// entry timeout.
func (r *rootNode) forget(bucket, key string) {
	dir := r.GetChild("buckets")
	for _, name := range append([]string{bucket}, strings.Split(key, "/")...) {
		if dir == nil {
			return
		}
		next := dir.GetChild(name)
		if errno := dir.NotifyEntry(name); errno != 0 && errno != syscall.ENOENT {
			r.opts.Log.Printf("invalidating %s/%s: %v", bucket, key, errno)
		}
		dir = next
	}
}

func (r *rootNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setMode(&out.Attr, syscall.S_IFDIR|0o755)
	return 0
}

// errno maps store errors to what a lookup or listing should see: ENOENT
// for a missing name, else EIO (store unreachable or too slow, object
// changed). Never EINTR: lookups are not canceled by signals (metaContext).
func errno(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, store.ErrChanged):
		return syscall.EIO
	case isNotExist(err):
		return syscall.ENOENT
	}
	return syscall.EIO
}
