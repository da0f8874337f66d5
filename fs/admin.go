package fs

import (
	"context"
	"os"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// What other users see in buckets/ with AllowOther (Options.OthersSee).
const (
	// OthersSeeOutputs: other users list and read task outputs only;
	// sources (the clear media) are hidden from listings, not found by
	// lookups, and mode 0400 (owner only). The default: a web server
	// serving the mount must not hand out unencrypted media.
	OthersSeeOutputs = "outputs"
	// OthersSeeAll: other users read every object too.
	OthersSeeAll = "all"
)

// hidesSources reports whether the caller of a request is another user who
// must see outputs only. The owner and root see everything.
func (o *Options) hidesSources(ctx context.Context) bool {
	if !o.AllowOther || o.OthersSee == OthersSeeAll {
		return false
	}
	caller, ok := fuse.FromContext(ctx)
	if !ok {
		return true
	}
	return caller.Uid != 0 && caller.Uid != uint32(os.Getuid())
}

// sourceMode is the permission of a store object: readable by everyone
// only when other users may see sources.
func (o *Options) sourceMode() uint32 {
	if o.AllowOther && o.OthersSee != OthersSeeAll {
		return 0o400
	}
	return 0o444
}

// fillStatfs answers statfs(2) (df, editors, cp) with sane values: mpcfs
// stores nothing itself, so it reports a large, empty, read-mostly volume
// with the usual 255-byte names.
func fillStatfs(out *fuse.StatfsOut) {
	const blocks = 1 << 28 // 1 TiB of 4 KiB blocks
	out.Bsize = 4096
	out.Frsize = 4096
	out.Blocks = blocks
	out.Bfree = blocks
	out.Bavail = blocks
	out.Files = 1 << 20
	out.Ffree = 1 << 20
	out.NameLen = 255
}

func (readOnlyDir) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	fillStatfs(out)
	return 0
}

func (readOnlyFile) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	fillStatfs(out)
	return 0
}

func (r *requestNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	fillStatfs(out)
	return 0
}

func (c *cancelNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	fillStatfs(out)
	return 0
}

var (
	_ fusefs.NodeStatfser = (*rootNode)(nil)
	_ fusefs.NodeStatfser = (*dirNode)(nil)
	_ fusefs.NodeStatfser = (*objectNode)(nil)
	_ fusefs.NodeStatfser = (*requestNode)(nil)
	_ fusefs.NodeStatfser = (*cancelNode)(nil)
	_ fusefs.NodeStatfser = (*taskNode)(nil)
)
