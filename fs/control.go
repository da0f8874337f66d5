package fs

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/mpcfs/mpcfs/internal/metrics"
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
	setMode(&out.Attr, syscall.S_IFDIR|0o700)
	return 0
}

// encryptionsNode is control/encryptions: a *.json file written and closed
// submits a task and then reads back the 202 or 400 body. Any other name
// (an editor's swap file, vim's "4913" probe, sed -i's temporary) is a
// scratch file, kept in memory only, never submitted; renaming a scratch
// file to a *.json name submits its content (write-temp-then-rename).
type encryptionsNode struct {
	fusefs.Inode
	readOnlyDir
	opts *Options

	mu      sync.Mutex
	scratch map[string][]byte
	// backupOf maps a scratch file made by renaming a response away (an
	// editor's backup before it writes the file anew) to that response's
	// name: writing the same body back under that name submits nothing.
	backupOf map[string]string
}

// Scratch files are few and small: editors make one or two at a time.
const (
	maxScratchFiles = 64
	maxScratchSize  = maxRequestFile
)

var (
	_ fusefs.NodeCreater   = (*encryptionsNode)(nil)
	_ fusefs.NodeUnlinker  = (*encryptionsNode)(nil)
	_ fusefs.NodeRenamer   = (*encryptionsNode)(nil)
	_ fusefs.NodeLookuper  = (*encryptionsNode)(nil)
	_ fusefs.NodeReaddirer = (*encryptionsNode)(nil)
)

// isRequestName reports whether a name submits a request: *.json, not
// hidden (editors' .x.json.swp-like names start with a dot).
func isRequestName(name string) bool {
	return strings.HasSuffix(name, ".json") && !strings.HasPrefix(name, ".")
}

func (e *encryptionsNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setMode(&out.Attr, syscall.S_IFDIR|0o700)
	return 0
}

func (e *encryptionsNode) Readdir(ctx context.Context) (fusefs.DirStream, syscall.Errno) {
	names := e.opts.Manager.ResponseNames()
	e.mu.Lock()
	for n := range e.scratch {
		names = append(names, n)
	}
	e.mu.Unlock()
	return listNames(names, ""), 0
}

// content is what a name in control/encryptions holds now: a scratch
// file's bytes or a response body (err: the task store did not give it).
func (e *encryptionsNode) content(name string) (data []byte, scratch, ok bool, err error) {
	e.mu.Lock()
	d, isScratch := e.scratch[name]
	e.mu.Unlock()
	if isScratch {
		return d, true, true, nil
	}
	body, ok, err := e.opts.Manager.Response(name)
	return body, false, ok, err
}

// size is what content's data would measure, without reading a response
// from the task store.
func (e *encryptionsNode) size(name string) (int64, bool) {
	e.mu.Lock()
	d, isScratch := e.scratch[name]
	e.mu.Unlock()
	if isScratch {
		return int64(len(d)), true
	}
	return e.opts.Manager.ResponseSize(name)
}

func (e *encryptionsNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	if _, ok := e.size(name); !ok {
		return nil, syscall.ENOENT
	}
	return e.child(ctx, name, &out.Attr), 0
}

func (e *encryptionsNode) child(ctx context.Context, name string, a *fuse.Attr) *fusefs.Inode {
	n := &requestNode{opts: e.opts, dir: e}
	n.fillName(name, a)
	return e.NewInode(ctx, n, fusefs.StableAttr{Mode: syscall.S_IFREG, Ino: hashIno("r", name)})
}

func (e *encryptionsNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	if isRequestName(name) {
		n := e.child(ctx, name, &out.Attr)
		return n, &requestWriter{opts: e.opts, dir: e, name: name, orig: e.backupBody(name)}, fuse.FOPEN_DIRECT_IO, 0
	}
	e.mu.Lock()
	if e.scratch == nil {
		e.scratch = map[string][]byte{}
	}
	if _, ok := e.scratch[name]; !ok && len(e.scratch) >= maxScratchFiles {
		e.mu.Unlock()
		e.opts.Log.Printf("control/encryptions: refusing %q: %d scratch files already (requests are named *.json)", name, maxScratchFiles)
		return nil, nil, 0, syscall.ENOSPC
	}
	e.scratch[name] = nil
	e.mu.Unlock()
	n := e.child(ctx, name, &out.Attr)
	return n, &scratchHandle{dir: e, name: name}, fuse.FOPEN_DIRECT_IO, 0
}

func (e *encryptionsNode) Unlink(ctx context.Context, name string) syscall.Errno {
	e.mu.Lock()
	_, ok := e.scratch[name]
	delete(e.scratch, name)
	delete(e.backupOf, name)
	e.mu.Unlock()
	if ok {
		return 0
	}
	if !e.opts.Manager.RemoveResponse(name) {
		return syscall.ENOENT
	}
	return 0
}

// renameNoReplace is RENAME_NOREPLACE of renameat2(2).
const renameNoReplace = 1

// Rename within control/encryptions: a scratch file renamed to a *.json
// name is submitted (exactly one task; a rejected request fails the rename
// with EINVAL, leaves the scratch file, and its 400 body is readable under
// the new name); a response moves without submitting anything.
func (e *encryptionsNode) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if newParent.EmbeddedInode() != &e.Inode {
		return syscall.EXDEV
	}
	if flags&^renameNoReplace != 0 {
		return syscall.EINVAL
	}
	data, isScratch, ok, err := e.content(name)
	if err != nil {
		e.opts.Log.Printf("control/encryptions/%s: %v", name, err)
		return syscall.EIO
	}
	if !ok {
		return syscall.ENOENT
	}
	if _, _, exists, _ := e.content(newName); exists && flags&renameNoReplace != 0 {
		return syscall.EEXIST
	}
	if name == newName {
		return 0
	}
	e.dropScratch(newName)
	switch {
	case isScratch && isRequestName(newName):
		if cur, ok, _ := e.opts.Manager.Response(newName); ok && sameBody(cur, data) {
			e.dropScratch(name) // sed -i that changed nothing: nothing to submit
			return 0
		}
		if e.submit(newName, data) != 0 {
			return syscall.EINVAL
		}
		e.dropScratch(name)
	case isScratch:
		e.mu.Lock()
		delete(e.scratch, name)
		delete(e.backupOf, name)
		e.scratch[newName] = data
		e.mu.Unlock()
	case isRequestName(newName):
		e.opts.Manager.RenameResponse(name, newName)
	default: // a response renamed to a scratch name (an editor's backup)
		e.mu.Lock()
		if e.scratch == nil {
			e.scratch = map[string][]byte{}
		}
		if e.backupOf == nil {
			e.backupOf = map[string]string{}
		}
		e.scratch[newName] = data
		e.backupOf[newName] = name
		e.mu.Unlock()
		e.opts.Manager.RemoveResponse(name)
	}
	return 0
}

func (e *encryptionsNode) dropScratch(name string) {
	e.mu.Lock()
	delete(e.scratch, name)
	delete(e.backupOf, name)
	e.mu.Unlock()
}

// backupBody is the response an editor moved away from name, if any.
func (e *encryptionsNode) backupBody(name string) []byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	for scratch, of := range e.backupOf {
		if of == name {
			return e.scratch[scratch]
		}
	}
	return nil
}

func sameBody(a, b []byte) bool { return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b)) }

// submit creates the task of a request file and logs the outcome (name,
// task id or error code; never the request, which holds the key). A
// rejected request returns EINVAL for close(2) or rename(2) to report.
func (e *encryptionsNode) submit(name string, data []byte) syscall.Errno {
	body := e.opts.Manager.Create(name, data)
	var resp struct {
		TaskID    string `json:"task_id"`
		ErrorCode string `json:"error_code"`
		ErrorMsg  string `json:"error_msg"`
	}
	json.Unmarshal(body, &resp)
	if resp.ErrorCode != "" {
		metrics.Requests.WithLabelValues("rejected").Inc()
		e.opts.Log.Printf("request %s rejected: %s: %s", name, resp.ErrorCode, resp.ErrorMsg)
		return syscall.EINVAL
	}
	metrics.Requests.WithLabelValues("accepted").Inc()
	e.opts.Log.Printf("request %s accepted: task %s", name, resp.TaskID)
	return 0
}

// requestNode is one file of control/encryptions. It finds what it holds
// by its current name (renames move it), so one node type serves request
// files and scratch files.
type requestNode struct {
	fusefs.Inode
	opts *Options
	dir  *encryptionsNode
}

var (
	_ fusefs.NodeOpener    = (*requestNode)(nil)
	_ fusefs.NodeSetattrer = (*requestNode)(nil)
	_ fusefs.NodeFsyncer   = (*requestNode)(nil)
)

func (r *requestNode) name() string {
	name, _ := r.Parent()
	return name
}

func (r *requestNode) fillName(name string, a *fuse.Attr) {
	size, _ := r.dir.size(name)
	setMode(a, syscall.S_IFREG|0o600)
	a.Size = uint64(size)
	a.Blocks = (a.Size + 511) / 512
}

func (r *requestNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	if w, ok := f.(*requestWriter); ok { // written, not yet closed
		w.mu.Lock()
		setMode(&out.Attr, syscall.S_IFREG|0o600)
		out.Size = uint64(len(w.buf))
		w.mu.Unlock()
		return 0
	}
	r.fillName(r.name(), &out.Attr)
	return 0
}

// Setattr truncates what is being written (O_TRUNC, ftruncate) and accepts
// the chmod, chown and utimes that cp and editors send.
func (r *requestNode) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if size, ok := in.GetSize(); ok {
		switch h := f.(type) {
		case *requestWriter:
			h.truncate(int(min(size, maxRequestFile)))
		case *scratchHandle:
			h.dir.truncateScratch(h.name, int(min(size, maxScratchSize)))
		default:
			if _, isScratch, _, _ := r.dir.content(r.name()); isScratch {
				r.dir.truncateScratch(r.name(), int(min(size, maxScratchSize)))
			}
		}
	}
	return r.Getattr(ctx, f, out)
}

// Fsync succeeds: a request is submitted, durably, when its file is
// closed (editors fsync before that; vim refuses :wq if fsync fails).
func (r *requestNode) Fsync(ctx context.Context, f fusefs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

func (r *requestNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	name := r.name()
	data, isScratch, ok, err := r.dir.content(name)
	if err != nil {
		r.opts.Log.Printf("control/encryptions/%s: %v", name, err)
		return nil, 0, syscall.EIO
	}
	if !ok {
		return nil, 0, syscall.ENOENT
	}
	if flags&(syscall.O_WRONLY|syscall.O_RDWR) == 0 {
		return &bytesHandle{data: data}, fuse.FOPEN_DIRECT_IO, 0
	}
	if isScratch {
		return &scratchHandle{dir: r.dir, name: name}, fuse.FOPEN_DIRECT_IO, 0
	}
	// Like a real file, an open without O_TRUNC starts from the content
	// (the response): writing it back unchanged submits nothing, and
	// appending to it makes an invalid request.
	w := &requestWriter{opts: r.opts, dir: r.dir, name: name, buf: append([]byte(nil), data...), orig: data}
	return w, fuse.FOPEN_DIRECT_IO, 0
}

// requestWriter collects a request and submits it when the file is closed
// (flush), so `cp req.json control/encryptions/` followed by `cat` reads the
// response, and a rejected request fails close(2) with EINVAL.
type requestWriter struct {
	opts  *Options
	dir   *encryptionsNode
	name  string
	mu    sync.Mutex
	buf   []byte
	orig  []byte // the response the file held when opened
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

func (w *requestWriter) truncate(size int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if size < len(w.buf) {
		w.buf = w.buf[:size]
	} else {
		w.buf = append(w.buf, make([]byte, size-len(w.buf))...)
	}
	w.dirty = true
}

func (w *requestWriter) Flush(ctx context.Context) syscall.Errno {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.dirty {
		return 0
	}
	w.dirty = false
	if w.orig != nil && sameBody(w.buf, w.orig) {
		return 0 // the response saved back unchanged (vim :wq after viewing)
	}
	return w.dir.submit(w.name, w.buf)
}

func (w *requestWriter) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }

func (w *requestWriter) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	w.mu.Lock()
	data := w.buf
	if !w.dirty {
		data, _, _ = w.opts.Manager.Response(w.name)
	}
	w.mu.Unlock()
	return (&bytesHandle{data: data}).Read(ctx, dest, off)
}

// scratchHandle is an open scratch file of control/encryptions.
type scratchHandle struct {
	dir  *encryptionsNode
	name string
}

func (h *scratchHandle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	end := off + int64(len(data))
	if end > maxScratchSize {
		return 0, syscall.EFBIG
	}
	h.dir.mu.Lock()
	defer h.dir.mu.Unlock()
	buf, ok := h.dir.scratch[h.name]
	if !ok {
		return 0, syscall.ENOENT // renamed or removed while open
	}
	if end > int64(len(buf)) {
		buf = append(buf, make([]byte, end-int64(len(buf)))...)
	}
	copy(buf[off:], data)
	h.dir.scratch[h.name] = buf
	return uint32(len(data)), 0
}

func (h *scratchHandle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	data, _, _, _ := h.dir.content(h.name)
	return (&bytesHandle{data: data}).Read(ctx, dest, off)
}

func (h *scratchHandle) Flush(ctx context.Context) syscall.Errno               { return 0 }
func (h *scratchHandle) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }

func (e *encryptionsNode) truncateScratch(name string, size int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	buf, ok := e.scratch[name]
	if !ok {
		return
	}
	if size < len(buf) {
		buf = buf[:size]
	} else {
		buf = append(buf, make([]byte, size-len(buf))...)
	}
	e.scratch[name] = buf
}

// tasksNode is control/tasks: one <task_id>.json per task.
type tasksNode struct {
	fusefs.Inode
	readOnlyDir
	opts *Options
}

var (
	_ fusefs.NodeLookuper       = (*tasksNode)(nil)
	_ fusefs.NodeOpendirHandler = (*tasksNode)(nil)
	_ fusefs.FileReaddirenter   = (*taskDirHandle)(nil)
	_ fusefs.FileSeekdirer      = (*taskDirHandle)(nil)
	_ fusefs.FileLookuper       = (*taskDirHandle)(nil)
)

func (t *tasksNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setMode(&out.Attr, syscall.S_IFDIR|0o500)
	return 0
}

// OpendirHandle lists the tasks one entry at a time (there may be
// 100,000 of them), without looking each one up (taskDirHandle.Lookup).
func (t *tasksNode) OpendirHandle(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	return &taskDirHandle{dir: t}, 0, 0
}

// taskDirHandle is an open control/tasks.
type taskDirHandle struct {
	dir  *tasksNode
	ids  []string // listed at the first read
	next int
}

func (h *taskDirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if h.ids == nil {
		h.ids = h.dir.opts.Manager.TaskIDs()
	}
	if h.next >= len(h.ids) {
		return nil, 0
	}
	h.next++
	return &fuse.DirEntry{Name: h.ids[h.next-1] + ".json", Mode: syscall.S_IFREG, Off: uint64(h.next)}, 0
}

// Seekdir goes back to an entry (offsets are entry numbers); 0 lists
// the tasks anew (rewinddir).
func (h *taskDirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if off == 0 {
		h.ids = nil
	}
	h.next = int(off)
	return 0
}

// Lookup answers the kernel's READDIRPLUS for one name: with no entry
// (an errno leaves the entry's node id 0, which the kernel takes as "no
// attributes given", not as ENOENT), so a plain ls of 100,000 tasks makes
// no inode and reads no record; a stat of a name looks it up as usual.
func (h *taskDirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.ENOENT
}

func (t *tasksNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	id, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return nil, syscall.ENOENT
	}
	body, ok := t.opts.Manager.TaskJSON(id)
	if !ok {
		return nil, syscall.ENOENT
	}
	n := &taskNode{opts: t.opts, id: id}
	n.fillFrom(body, &out.Attr)
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

// fill gives the task file the task's times: atime its creation, mtime
// and ctime its end (its creation while it runs), so ls -t and find -newer
// order tasks.
func (t *taskNode) fill(a *fuse.Attr) { t.fillFrom(t.body(), a) }

func (t *taskNode) fillFrom(body []byte, a *fuse.Attr) {
	setMode(a, syscall.S_IFREG|0o400)
	a.Size = uint64(len(body))
	a.Blocks = (a.Size + 511) / 512
	var times struct {
		Create string `json:"create_time"`
		End    string `json:"end_time"`
	}
	json.Unmarshal(body, &times)
	setTaskTimes(a, times.Create, times.End)
}

// setTaskTimes sets a task file's atime to its creation, mtime and ctime
// to its end (its creation while it runs).
func setTaskTimes(a *fuse.Attr, create, end string) {
	created, err := time.Parse(mpcTimeFormat, create)
	if err != nil {
		return
	}
	changed := created
	if ended, err := time.Parse(mpcTimeFormat, end); err == nil {
		changed = ended
	}
	a.SetTimes(&created, &changed, &changed)
}

// mpcTimeFormat is MPC's yyyymmddhhmmss, UTC.
const mpcTimeFormat = "20060102150405"

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
	_ fusefs.NodeFsyncer   = (*cancelNode)(nil)
)

// Fsync succeeds: each line is canceled as it is written (dd conv=fsync,
// editors).
func (c *cancelNode) Fsync(ctx context.Context, f fusefs.FileHandle, flags uint32) syscall.Errno {
	return 0
}

func (c *cancelNode) Getattr(ctx context.Context, f fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	setMode(&out.Attr, syscall.S_IFREG|0o600)
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

func (w *cancelWriter) Fsync(ctx context.Context, flags uint32) syscall.Errno { return 0 }

// cancel cancels the task ids of lines. Lines that are JSON objects are the
// results control/cancel reads back: an editor saving the file writes them
// again, so they are skipped, and only the ids added are canceled.
func (w *cancelWriter) cancel(lines string) syscall.Errno {
	var ids []string
	for _, line := range strings.Split(lines, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "{") {
			ids = append(ids, line)
		}
	}
	if len(ids) == 0 {
		return 0
	}
	lines = strings.Join(ids, "\n")
	if err := w.opts.Manager.CancelLines(lines); err != nil {
		w.opts.Log.Printf("control/cancel: %v", err)
		return syscall.EINVAL
	}
	return 0
}

// listNames lists files named names[i]+suffix, one entry at a time as the
// kernel asks for them: control/tasks may hold 100,000 tasks, and a
// listing does not build every entry at once.
func listNames(names []string, suffix string) fusefs.DirStream {
	return &nameStream{names: names, suffix: suffix}
}

type nameStream struct {
	names  []string
	suffix string
	next   int
}

func (s *nameStream) HasNext() bool { return s.next < len(s.names) }

func (s *nameStream) Next() (fuse.DirEntry, syscall.Errno) {
	name := s.names[s.next]
	s.next++
	return fuse.DirEntry{Name: name + s.suffix, Mode: syscall.S_IFREG}, 0
}

func (s *nameStream) Close() {}
