package fs

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mpcfs/mpcfs/control"
	"github.com/mpcfs/mpcfs/crypto"
	"github.com/mpcfs/mpcfs/internal/metrics"
	"github.com/mpcfs/mpcfs/store"
)

// metaContext is the context of the store requests a lookup, getattr,
// readdir or open makes. It is not canceled when the caller gets a signal
// (the kernel then sends FUSE_INTERRUPT, which cancels the request's
// context): most programs (bash's [[ -f ]], ls, find) do not retry a stat
// that fails with EINTR, so a signal would make an existing file look
// missing. The call finishes instead, bounded as below. Reads keep
// the request's context: read(2) may return EINTR and callers retry it.
// Tuning.StoreTimeout bounds it, so a store that went away or froze gives
// EIO within seconds instead of a hung ls.
func (o *Options) metaContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), o.Tuning.StoreTimeout)
}

func isNotExist(err error) bool   { return errors.Is(err, store.ErrNotExist) }
func isContextErr(err error) bool { return errors.Is(err, context.Canceled) }

// bucketsNode is MOUNT/buckets: one folder per bucket of the store.
type bucketsNode struct {
	fusefs.Inode
	readOnlyDir
	opts *Options
}

var (
	_ fusefs.NodeLookuper  = (*bucketsNode)(nil)
	_ fusefs.NodeReaddirer = (*bucketsNode)(nil)
	_ fusefs.NodeGetattrer = (*bucketsNode)(nil)
)

func (b *bucketsNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setMode(&out.Attr, syscall.S_IFDIR|0o555)
	return 0
}

func (b *bucketsNode) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	ctx, cancel := b.opts.metaContext(ctx)
	defer cancel()
	names, err := b.opts.Store.Buckets(ctx)
	if err != nil {
		b.opts.Log.Printf("listing buckets: %v", err)
		return nil, errno(err)
	}
	var entries []fuse.DirEntry
	hide := b.opts.hidesSources(ctx)
	for _, n := range names {
		if hide && !b.opts.Manager.Outputs().HasOutputs(n) {
			continue
		}
		if n != b.opts.SysBucket {
			entries = append(entries, fuse.DirEntry{Name: n, Mode: syscall.S_IFDIR, Ino: dirIno(n, "")})
		}
	}
	return fusefs.NewListDirStream(entries), 0
}

func (b *bucketsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if name == b.opts.SysBucket || (b.opts.hidesSources(ctx) && !b.opts.Manager.Outputs().HasOutputs(name)) {
		return nil, syscall.ENOENT
	}
	if b.opts.Manager.Outputs().HasOutputs(name) || b.opts.Manager.BucketSeen(name) {
		// Outputs and buckets seen answer without the store (a frozen
		// store must not block what the mount already holds; the kernel
		// asks again each EntryTTL, and twice when a store error fails
		// its revalidation).
		return newDir(ctx, &b.Inode, b.opts, name, "", out), 0
	}
	ctx, cancel := b.opts.metaContext(ctx)
	defer cancel()
	ok, err := b.opts.Manager.BucketExists(ctx, name)
	if err != nil {
		return nil, errno(err)
	}
	if !ok {
		return nil, syscall.ENOENT
	}
	return newDir(ctx, &b.Inode, b.opts, name, "", out), 0
}

// maxNameBytes is the longest file name the kernel accepts (NAME_MAX).
const maxNameBytes = 255

// dirNode is a folder of a bucket: the store's objects and sub-prefixes
// under prefix, overlaid with task outputs (an output hides an object of the
// same name).
type dirNode struct {
	fusefs.Inode
	readOnlyDir
	opts   *Options
	bucket string
	prefix string // "" or ending in "/"

	mu     sync.Mutex
	listed *folderListing // the last listing, while Tuning.ListingTTL trusts it
}

// folderListing is what a listing said of a folder's names, kept to answer
// the lookups that follow it (readdirplus asks one per entry).
type folderListing struct {
	at       time.Time
	objects  map[string]store.ObjectInfo // by name in the folder
	prefixes map[string]bool             // sub-folder names
}

// remember keeps the listing l for the lookups that follow it.
func (d *dirNode) remember(l store.Listing) {
	if d.opts.Tuning.ListingTTL <= 0 {
		return
	}
	fl := &folderListing{at: time.Now(), objects: make(map[string]store.ObjectInfo, len(l.Objects)), prefixes: make(map[string]bool, len(l.Prefixes))}
	for _, o := range l.Objects {
		fl.objects[strings.TrimPrefix(o.Key, d.prefix)] = o
	}
	for _, p := range l.Prefixes {
		fl.prefixes[strings.TrimSuffix(strings.TrimPrefix(p, d.prefix), "/")] = true
	}
	d.mu.Lock()
	d.listed = fl
	d.mu.Unlock()
}

// recall answers a lookup of name from a listing still trusted: an
// object's info, or folder true. ok false: ask the store (the listing is
// old, or does not hold the name - it may be newer than the listing).
func (d *dirNode) recall(name string) (info store.ObjectInfo, folder, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fl := d.listed
	if fl == nil {
		return info, false, false
	}
	if time.Since(fl.at) > d.opts.Tuning.ListingTTL {
		d.listed = nil // its memory goes with it
		return info, false, false
	}
	if info, ok := fl.objects[name]; ok {
		return info, false, true
	}
	return info, fl.prefixes[name], fl.prefixes[name]
}

var (
	_ fusefs.NodeLookuper       = (*dirNode)(nil)
	_ fusefs.NodeOpendirHandler = (*dirNode)(nil)
	_ fusefs.NodeGetattrer      = (*dirNode)(nil)
)

// foldersAnswered counts the folder nodes made for the kernel (lookups
// answered with a folder); tests read it.
var foldersAnswered atomic.Int64

func newDir(ctx context.Context, parent *fusefs.Inode, opts *Options, bucket, prefix string, out *fuse.EntryOut) *fusefs.Inode {
	foldersAnswered.Add(1)
	d := &dirNode{opts: opts, bucket: bucket, prefix: prefix}
	d.fill(&out.Attr)
	return parent.NewInode(ctx, d, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: dirIno(bucket, prefix)})
}

func (d *dirNode) fill(a *fuse.Attr) { setMode(a, syscall.S_IFDIR|0o555) }

func (d *dirNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	d.fill(&out.Attr)
	return 0
}

// OpendirHandle lists the folder through a folderHandle, whose Lookup
// answers the kernel's READDIRPLUS.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	return &folderHandle{dir: d}, 0, 0
}

// folderHandle is an open bucket folder. The kernel lists with
// READDIRPLUS, which looks up every entry as it is listed. A file's
// attributes come from the listing or the task's outline and `ls -l`
// wants them, so files are looked up as usual, and so are the folders of
// a listing that holds at most Tuning.FolderAttrsMax of them. Beyond, a
// folder is answered without attributes (as control/tasks answers every
// entry): looking it up makes a node the kernel keeps until it forgets
// it, about 600 B of the daemon's heap per folder, for a name that `ls`
// and `find` only print or descend into. A catalogue's output folder
// holds one folder per title: a plain `ls` of 100,000 of them raised the
// daemon's RSS by ~50 MB. A stat, `ls -l` or a path through such a folder
// looks it up then.
type folderHandle struct {
	dir     *dirNode
	entries []fuse.DirEntry // listed at the first read
	listed  bool
	bare    bool // too many folders: give them without attributes
	next    int  // entries[next-1] was the last given out
}

var (
	_ fusefs.FileReaddirenter = (*folderHandle)(nil)
	_ fusefs.FileSeekdirer    = (*folderHandle)(nil)
	_ fusefs.FileLookuper     = (*folderHandle)(nil)
)

func (h *folderHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if !h.listed {
		entries, errno := h.dir.list(ctx)
		if errno != 0 {
			return nil, errno
		}
		folders := 0
		for _, e := range entries {
			if e.Mode == syscall.S_IFDIR {
				folders++
			}
		}
		h.entries, h.listed = entries, true
		h.bare = folders > h.dir.opts.Tuning.FolderAttrsMax
	}
	if h.next >= len(h.entries) {
		return nil, 0
	}
	h.next++
	e := h.entries[h.next-1]
	e.Off = uint64(h.next)
	return &e, 0
}

// Seekdir goes back to an entry (offsets are entry numbers); 0 lists the
// folder anew (rewinddir).
func (h *folderHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off == 0 {
		h.entries, h.listed = nil, false
	}
	h.next = int(off)
	return 0
}

// Lookup answers READDIRPLUS for the entry just given out (go-fuse asks
// for that one): in a listing with too many folders, a folder with no
// entry (an errno leaves its node id 0, which the kernel takes as "no
// attributes given", not as ENOENT); anything else as dirNode.Lookup
// does. A name that is not the last one given out (a listing the kernel
// interrupted and asks again) is looked up as usual.
func (h *folderHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if h.bare && h.next > 0 && h.next <= len(h.entries) {
		if e := h.entries[h.next-1]; e.Name == name && e.Mode == syscall.S_IFDIR {
			return nil, syscall.ENOENT
		}
	}
	return h.dir.Lookup(ctx, name, out)
}

// list is what the folder holds: the task outputs in it, then (unless
// sources are hidden) the store's objects and sub-folders.
func (d *dirNode) list(ctx context.Context) ([]fuse.DirEntry, syscall.Errno) {
	ctx, cancel := d.opts.metaContext(ctx)
	defer cancel()
	outputs, err := d.opts.Manager.Outputs().Children(ctx, d.bucket, d.prefix)
	if err != nil {
		d.opts.Log.Printf("listing the outputs in %s/%s: %v", d.bucket, d.prefix, err)
		return nil, errno(err)
	}
	l, err := d.opts.Store.List(ctx, d.bucket, d.prefix)
	if err != nil && !isNotExist(err) {
		if len(outputs) == 0 || !errors.Is(err, store.ErrUnavailable) {
			d.opts.Log.Printf("listing %s/%s: %v", d.bucket, d.prefix, err)
			return nil, errno(err)
		}
		// The mount holds the outputs' names: list them alone rather
		// than fail (an output folder seldom holds anything else).
		d.opts.Log.Printf("listing %s/%s: %v; listing the task outputs only", d.bucket, d.prefix, err)
		l = store.Listing{}
	}
	seen := map[string]bool{}
	var entries []fuse.DirEntry
	add := func(name string, mode uint32) {
		if len(name) > maxNameBytes {
			// The kernel fails the whole listing (EIO) on a name it cannot
			// hold; such an object is only reachable through S3 itself.
			d.opts.Log.Printf("listing %s/%s: skipping a %d-byte name (names hold at most %d)", d.bucket, d.prefix, len(name), maxNameBytes)
			return
		}
		if name != "" && !seen[name] {
			seen[name] = true
			entries = append(entries, fuse.DirEntry{Name: name, Mode: mode})
		}
	}
	for _, name := range outputs {
		if dir, ok := strings.CutSuffix(name, "/"); ok {
			add(dir, syscall.S_IFDIR)
		} else {
			add(name, syscall.S_IFREG)
		}
	}
	if d.opts.hidesSources(ctx) {
		return entries, 0
	}
	d.remember(l)
	for _, p := range l.Prefixes {
		add(strings.TrimSuffix(strings.TrimPrefix(p, d.prefix), "/"), syscall.S_IFDIR)
	}
	for _, o := range l.Objects {
		add(strings.TrimPrefix(o.Key, d.prefix), syscall.S_IFREG)
	}
	return entries, 0
}

func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	key := d.prefix + name
	octx, stop := d.opts.metaContext(ctx)
	o, err := d.opts.Manager.Outputs().Find(octx, d.bucket, key)
	stop()
	if err != nil {
		d.opts.Log.Printf("looking up output %s/%s: %v", d.bucket, key, err)
		return nil, syscall.EIO
	}
	if o != nil {
		return d.newOutput(ctx, o, out), 0
	}
	if d.opts.Manager.Outputs().IsDir(d.bucket, key) {
		return newDir(ctx, &d.Inode, d.opts, d.bucket, key+"/", out), 0
	}
	if d.opts.hidesSources(ctx) {
		return nil, syscall.ENOENT
	}
	if info, folder, ok := d.recall(name); ok {
		if folder {
			return newDir(ctx, &d.Inode, d.opts, d.bucket, key+"/", out), 0
		}
		return d.newObject(ctx, info, out), 0
	}
	ctx, cancel := d.opts.metaContext(ctx)
	defer cancel()
	// An object named key, else a folder if anything lies under key/. Both
	// questions go to the store at once, as mountpoint-s3 does: on a store
	// 20 ms away a folder costs one round trip, not two. The object wins.
	type prefixAnswer struct {
		ok  bool
		err error
	}
	folder := make(chan prefixAnswer, 1)
	prefixCtx, stopPrefix := context.WithCancel(ctx)
	defer stopPrefix() // an object found: the listing's answer is not needed
	go func() {
		ok, err := d.opts.Store.HasPrefix(prefixCtx, d.bucket, key+"/")
		folder <- prefixAnswer{ok, err}
	}()
	info, err := d.opts.Store.Stat(ctx, d.bucket, key)
	if err == nil {
		return d.newObject(ctx, info, out), 0
	}
	if !isNotExist(err) {
		return nil, errno(err)
	}
	f := <-folder
	if f.err != nil {
		return nil, errno(f.err)
	}
	if !f.ok {
		return nil, syscall.ENOENT
	}
	return newDir(ctx, &d.Inode, d.opts, d.bucket, key+"/", out), 0
}

func (d *dirNode) newObject(ctx context.Context, info store.ObjectInfo, out *fuse.EntryOut) *fusefs.Inode {
	n := &objectNode{opts: d.opts, bucket: d.bucket, info: info}
	n.fill(&out.Attr)
	return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: objectIno(d.bucket, info)})
}

func (d *dirNode) newOutput(ctx context.Context, o *control.Output, out *fuse.EntryOut) *fusefs.Inode {
	n := &outputNode{opts: d.opts, output: o}
	n.fill(&out.Attr)
	out.SetEntryTimeout(d.opts.Tuning.OutputEntryTTL)
	out.SetAttrTimeout(d.opts.Tuning.OutputEntryTTL)
	return d.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: o.Ino})
}

// objectNode is a store object, read as it is.
type objectNode struct {
	fusefs.Inode
	readOnlyFile
	opts   *Options
	bucket string
	info   store.ObjectInfo
}

var (
	_ fusefs.NodeOpener    = (*objectNode)(nil)
	_ fusefs.NodeGetattrer = (*objectNode)(nil)
)

func (n *objectNode) fill(a *fuse.Attr) {
	fileAttr(a, n.info.Size, n.info.ModTime)
	setMode(a, syscall.S_IFREG|n.opts.sourceMode())
}

func (n *objectNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(&out.Attr)
	return 0
}

func (n *objectNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	// Reads are conditioned on the ETag seen at lookup: the size is that
	// version's, and a replaced object gets a new inode (objectIno), so an
	// open file never mixes bytes of two versions: it fails with EIO.
	st, bucket, key, etag := n.opts.Store, n.bucket, n.info.Key, n.info.ETag
	f, err := crypto.NewFile([]crypto.Part{{PlainSize: n.info.Size, Src: func(ctx context.Context, off, len int64) (io.ReadCloser, error) {
		return st.OpenMatch(ctx, bucket, key, etag, off, len)
	}}})
	if err != nil {
		return nil, 0, syscall.EIO
	}
	return newReadHandle(f, n.opts, bucket+"/"+key, metrics.KindObject), readOnlyOpen, 0
}

// outputNode is an output of a SUCCEEDED task: a playlist held in memory or
// a segment encrypted on the fly.
type outputNode struct {
	fusefs.Inode
	readOnlyFile
	opts   *Options
	output *control.Output // what the node serves (out is always a reply to the kernel)
}

var (
	_ fusefs.NodeOpener    = (*outputNode)(nil)
	_ fusefs.NodeGetattrer = (*outputNode)(nil)
)

func (n *outputNode) fill(a *fuse.Attr) { fileAttr(a, n.output.Size, time.Time{}) }

func (n *outputNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fill(&out.Attr)
	out.SetTimeout(n.opts.Tuning.OutputEntryTTL)
	return 0
}

func (n *outputNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EROFS
	}
	// The kernel may still hold this name for a moment after the task was
	// canceled or replaced: a withdrawn output must not open.
	outs := n.opts.Manager.Outputs()
	octx, cancel := n.opts.metaContext(ctx)
	cur, err := outs.Find(octx, n.output.Bucket, n.output.Key)
	cancel()
	if err != nil {
		n.opts.Log.Printf("opening output %s/%s: %v", n.output.Bucket, n.output.Key, err)
		return nil, 0, syscall.EIO
	}
	if cur == nil || cur.Ino != n.output.Ino {
		return nil, 0, syscall.ENOENT
	}
	if n.output.IsPlaylist() {
		data, err := outs.Playlist(n.output)
		if err != nil {
			n.opts.Log.Printf("opening output %s/%s: %v", n.output.Bucket, n.output.Key, err)
			return nil, 0, syscall.EIO
		}
		return newPlaylistHandle(data), readOnlyOpen, 0
	}
	f, err := outs.Open(n.output)
	if err != nil {
		n.opts.Log.Printf("opening output %s/%s: %v", n.output.Bucket, n.output.Key, err)
		return nil, 0, syscall.EIO
	}
	h := newReadHandle(f, n.opts, n.output.Bucket+"/"+n.output.Key, metrics.KindSegment)
	if n.output.Next() != nil {
		output := n.output
		h.warmNext = func() { outs.WarmNext(output) }
	}
	return h, readOnlyOpen, 0
}

func fileAttr(a *fuse.Attr, size int64, mtime time.Time) {
	setMode(a, syscall.S_IFREG|0o444)
	a.Size = uint64(size)
	a.Blocks = (uint64(size) + 511) / 512
	if !mtime.IsZero() {
		a.SetTimes(nil, &mtime, &mtime)
	}
}

// setMode gives a node its type and permission bits, and a link count of
// one: the kernel takes attributes as sent, and a count of zero reads as
// a deleted file to stat(1), find -links and backup tools. One is also
// what a folder reports when it does not count its sub-folders, which
// tells find(1) not to infer leaves from it.
func setMode(a *fuse.Attr, mode uint32) {
	a.Mode = mode
	a.Nlink = 1
}

// dirIno keeps a folder's inode stable across lookups.
func dirIno(bucket, prefix string) uint64 {
	return hashIno("d", bucket, prefix)
}

// objectIno changes with the object's ETag, so a changed object gets a new
// inode and never a stale kept page cache.
func objectIno(bucket string, info store.ObjectInfo) uint64 {
	return hashIno("o", bucket, info.Key, info.ETag)
}

func hashIno(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		io.WriteString(h, p)
		h.Write([]byte{0})
	}
	return h.Sum64()>>1 | 1<<62 // clear of small numbers and of outputs' high bit
}
