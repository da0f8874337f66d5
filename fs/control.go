package fs

import (
	"context"
	"strings"
	"sync"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// maxRequestFile bounds what one request file may hold; MPC requests are a
// few hundred bytes.
const maxRequestFile = 1 << 20

// controlNode is MOUNT/control, usable by the mount's owner only.
type controlNode struct {
	fusefs.Inode
	readOnlyDir
	opts *Options
}

func newControlNode(opts *Options) *controlNode { return &controlNode{opts: opts} }

var _ fusefs.NodeOnAdder = (*controlNode)(nil)

func (c *controlNode) OnAdd(ctx context.Context) {
	enc := c.NewPersistentInode(ctx, &encryptionsNode{opts: c.opts}, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: 4})
	c.AddChild("encryptions", enc, false)
	tasks := c.NewPersistentInode(ctx, &tasksNode{opts: c.opts}, fusefs.StableAttr{Mode: syscall.S_IFDIR, Ino: 5})
	c.AddChild("tasks", tasks, false)
	cancel := c.NewPersistentInode(ctx, &cancelNode{opts: c.opts}, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: 6})
	c.AddChild("cancel", cancel, false)
}

func (c *controlNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o700
	return 0
}

// encryptionsNode is control/encryptions: create a *.json file to submit a
// task; each file then reads back the 202 or 400 body.
type encryptionsNode struct {
	fusefs.Inode
	readOnlyDir
	opts *Options
}

var (
	_ fusefs.NodeCreater   = (*encryptionsNode)(nil)
	_ fusefs.NodeUnlinker  = (*encryptionsNode)(nil)
	_ fusefs.NodeLookuper  = (*encryptionsNode)(nil)
	_ fusefs.NodeReaddirer = (*encryptionsNode)(nil)
)

func (e *encryptionsNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o700
	return 0
}

func (e *encryptionsNode) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	return listNames(e.opts.Manager.ResponseNames(), ""), 0
}

func (e *encryptionsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if _, ok := e.opts.Manager.Response(name); !ok {
		return nil, syscall.ENOENT
	}
	return e.child(ctx, name, &out.Attr), 0
}

func (e *encryptionsNode) child(ctx context.Context, name string, a *fuse.Attr) *fusefs.Inode {
	n := &requestNode{opts: e.opts, name: name}
	n.fill(a)
	return e.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: hashIno("r", name)})
}

// Create accepts only *.json names: editors' swap and backup files would
// otherwise be submitted as requests.
func (e *encryptionsNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
		e.opts.Log.Printf("control/encryptions: refusing %q: request files are named *.json", name)
		return nil, nil, 0, syscall.EINVAL
	}
	n := e.child(ctx, name, &out.Attr)
	return n, &requestWriter{opts: e.opts, name: name}, fuse.FOPEN_DIRECT_IO, 0
}

func (e *encryptionsNode) Unlink(ctx context.Context, name string) syscall.Errno {
	if !e.opts.Manager.RemoveResponse(name) {
		return syscall.ENOENT
	}
	return 0
}

// requestNode is one control/encryptions/<name>.json.
type requestNode struct {
	fusefs.Inode
	opts *Options
	name string
}

var (
	_ fusefs.NodeOpener    = (*requestNode)(nil)
	_ fusefs.NodeSetattrer = (*requestNode)(nil)
)

func (r *requestNode) fill(a *fuse.Attr) {
	body, _ := r.opts.Manager.Response(r.name)
	a.Mode = syscall.S_IFREG | 0o600
	a.Size = uint64(len(body))
}

func (r *requestNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	r.fill(&out.Attr)
	return 0
}

// Setattr accepts the truncation of O_TRUNC (the next write replaces the
// request anyway) and the chmod/utimes cp may send.
func (r *requestNode) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	r.fill(&out.Attr)
	return 0
}

func (r *requestNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return &requestWriter{opts: r.opts, name: r.name}, fuse.FOPEN_DIRECT_IO, 0
	}
	body, _ := r.opts.Manager.Response(r.name)
	return &bytesHandle{data: body}, fuse.FOPEN_DIRECT_IO, 0
}

// requestWriter collects a request and submits it when the file is closed
// (flush), so `cp req.json control/encryptions/` followed by `cat` reads the
// response.
type requestWriter struct {
	opts  *Options
	name  string
	mu    sync.Mutex
	buf   []byte
	dirty bool
}

func (w *requestWriter) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	w.mu.Lock()
	defer w.mu.Unlock()
	end := off + int64(len(data))
	if end > maxRequestFile {
		return 0, syscall.EFBIG
	}
	if end > int64(len(w.buf)) {
		w.buf = append(w.buf, make([]byte, end-int64(len(w.buf)))...)
	}
	copy(w.buf[off:], data)
	w.dirty = true
	return uint32(len(data)), 0
}

func (w *requestWriter) Flush(ctx context.Context) syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dirty {
		w.dirty = false
		w.opts.Manager.Create(w.name, w.buf)
	}
	return 0
}

func (w *requestWriter) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	body, _ := w.opts.Manager.Response(w.name)
	return (&bytesHandle{data: body}).Read(ctx, dest, off)
}

// tasksNode is control/tasks: one <task_id>.json per task.
type tasksNode struct {
	fusefs.Inode
	readOnlyDir
	opts *Options
}

var (
	_ fusefs.NodeLookuper  = (*tasksNode)(nil)
	_ fusefs.NodeReaddirer = (*tasksNode)(nil)
)

func (t *tasksNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFDIR | 0o500
	return 0
}

func (t *tasksNode) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	return listNames(t.opts.Manager.TaskIDs(), ".json"), 0
}

func (t *tasksNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	id, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return nil, syscall.ENOENT
	}
	if _, ok := t.opts.Manager.TaskJSON(id); !ok {
		return nil, syscall.ENOENT
	}
	n := &taskNode{opts: t.opts, id: id}
	n.fill(&out.Attr)
	return t.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: hashIno("t", id)}), 0
}

// taskNode is control/tasks/<id>.json, rendered when opened.
type taskNode struct {
	fusefs.Inode
	readOnlyFile
	opts *Options
	id   string
}

var _ fusefs.NodeOpener = (*taskNode)(nil)

func (t *taskNode) body() []byte {
	b, _ := t.opts.Manager.TaskJSON(t.id)
	return b
}

func (t *taskNode) fill(a *fuse.Attr) {
	a.Mode = syscall.S_IFREG | 0o400
	a.Size = uint64(len(t.body()))
}

func (t *taskNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	t.fill(&out.Attr)
	return 0
}

func (t *taskNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return nil, 0, syscall.EACCES
	}
	return &bytesHandle{data: t.body()}, fuse.FOPEN_DIRECT_IO, 0
}

// cancelNode is control/cancel: write task ids, one a line, to cancel them;
// read it to see the results of recent cancels.
type cancelNode struct {
	fusefs.Inode
	opts *Options
}

var (
	_ fusefs.NodeOpener    = (*cancelNode)(nil)
	_ fusefs.NodeSetattrer = (*cancelNode)(nil)
)

func (c *cancelNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o600
	out.Size = uint64(len(c.opts.Manager.CancelLog()))
	return 0
}

func (c *cancelNode) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return c.Getattr(ctx, f, out)
}

func (c *cancelNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) != 0 {
		return &cancelWriter{opts: c.opts}, fuse.FOPEN_DIRECT_IO, 0
	}
	return &bytesHandle{data: c.opts.Manager.CancelLog()}, fuse.FOPEN_DIRECT_IO, 0
}

// cancelWriter cancels each complete line as it is written, so the writer
// gets EINVAL from write(2) for a task that cannot be canceled; the reason
// is in control/cancel and the log.
type cancelWriter struct {
	opts    *Options
	mu      sync.Mutex
	pending string
}

func (w *cancelWriter) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pending)+len(data) > maxRequestFile {
		return 0, syscall.EFBIG
	}
	text := w.pending + string(data)
	i := strings.LastIndexByte(text, '\n')
	w.pending = text[i+1:]
	if err := w.cancel(text[:i+1]); err != 0 {
		return 0, err
	}
	return uint32(len(data)), 0
}

func (w *cancelWriter) Flush(ctx context.Context) syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	text := w.pending
	w.pending = ""
	return w.cancel(text)
}

func (w *cancelWriter) cancel(lines string) syscall.Errno {
	if strings.TrimSpace(lines) == "" {
		return 0
	}
	if err := w.opts.Manager.CancelLines(lines); err != nil {
		w.opts.Log.Printf("control/cancel: %v", err)
		return syscall.EINVAL
	}
	return 0
}

func listNames(names []string, suffix string) fusefs.DirStream {
	entries := make([]fuse.DirEntry, len(names))
	for i, n := range names {
		entries[i] = fuse.DirEntry{Name: n + suffix, Mode: syscall.S_IFREG}
	}
	return fusefs.NewListDirStream(entries)
}
