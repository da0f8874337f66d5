// Command mpcfs mounts S3-compatible buckets (or a local folder of buckets)
// as a FUSE filesystem that runs MPC encryption tasks and serves their HLS
// output encrypted on the fly.
//
//	mpcfs mount [flags] MOUNTPOINT
//	mpcfs serve [flags]
//	mpcfs demo [--dir DIR]
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "mount":
		err = runMount(os.Args[2:])
	case "serve":
		err = runServe(os.Args[2:])
	case "demo":
		err = runDemo(os.Args[2:])
	case "-h", "--help", "help":
		usage()
		return
	default:
		fmt.Fprintf(os.Stderr, "mpcfs: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mpcfs:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  mpcfs mount [flags] MOUNTPOINT   mount; stays in the foreground until unmounted
  mpcfs serve [flags]              the MPC REST API and an HTTP origin, no FUSE
  mpcfs demo [--dir DIR]           make sample HLS, mount it, run a task, check the output
run "mpcfs mount -h" or "mpcfs serve -h" for the flags
`)
}
