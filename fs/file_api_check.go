package fs

import fusefs "github.com/hanwen/go-fuse/v2/fs"

// The file handles' go-fuse interfaces, checked at compile time (as
// gocryptfs's file_api_check.go does). go-fuse finds a handle's methods by
// interface assertion at run time, so a method whose signature drifts
// from the interface is silently never called: a request file would then
// never be submitted on close (requestWriter.Flush), or a reply never
// released (readHandle.Release). The nodes' checks sit beside each node.
var (
	_ fusefs.FileReader   = (*readHandle)(nil)
	_ fusefs.FileReleaser = (*readHandle)(nil)

	_ fusefs.FileReader = (*bytesHandle)(nil)

	_ fusefs.FileWriter  = (*requestWriter)(nil)
	_ fusefs.FileFlusher = (*requestWriter)(nil) // submits the request
	_ fusefs.FileReader  = (*requestWriter)(nil) // reads back the response

	_ fusefs.FileWriter  = (*cancelWriter)(nil)
	_ fusefs.FileFlusher = (*cancelWriter)(nil)
)
