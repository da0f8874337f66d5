package fs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// readOnlyDir refuses every change to a folder's entries with EROFS ("Read-
// only file system"): buckets/ mirrors the store read-only and only
// control/encryptions/ takes new files. Embedded in folder nodes; a node
// that accepts one of these operations defines its own method.
type readOnlyDir struct{}

func (readOnlyDir) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (readOnlyDir) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (readOnlyDir) Mknod(ctx context.Context, name string, mode, dev uint32, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (readOnlyDir) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (readOnlyDir) Link(ctx context.Context, target fusefs.InodeEmbedder, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (readOnlyDir) Unlink(ctx context.Context, name string) syscall.Errno { return syscall.EROFS }
func (readOnlyDir) Rmdir(ctx context.Context, name string) syscall.Errno  { return syscall.EROFS }

func (readOnlyDir) Rename(ctx context.Context, name string, newParent fusefs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	return syscall.EROFS
}

// Setattr refuses chmod, chown, truncate and utimes.
func (readOnlyDir) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

// readOnlyFile refuses attribute changes (truncate, chmod...) of a file;
// opening it for writing is refused by its Open.
type readOnlyFile struct{}

func (readOnlyFile) Setattr(ctx context.Context, f fusefs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

var (
	_ fusefs.NodeCreater   = (*dirNode)(nil)
	_ fusefs.NodeMkdirer   = (*bucketsNode)(nil)
	_ fusefs.NodeRenamer   = (*dirNode)(nil)
	_ fusefs.NodeSetattrer = (*objectNode)(nil)
	_ fusefs.NodeSetattrer = (*outputNode)(nil)
	_ fusefs.NodeUnlinker  = (*tasksNode)(nil)
	_ fusefs.NodeMkdirer   = (*rootNode)(nil)
	_ fusefs.NodeMkdirer   = (*controlNode)(nil)
	_ fusefs.NodeMkdirer   = (*encryptionsNode)(nil)
)
