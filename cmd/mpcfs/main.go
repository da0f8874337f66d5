// Command mpcfs mounts S3-compatible buckets (or a local folder of buckets)
// as a FUSE filesystem that runs MPC encryption tasks and serves their HLS
// output encrypted on the fly.
//
//	mpcfs mount [flags] MOUNTPOINT
//	mpcfs serve [flags]
//	mpcfs init | rekey OLD NEW | tasks [flags]
//	mpcfs demo [--dir DIR]
//	mount.mpcfs SOURCE MOUNTPOINT -o name=value,...   (mount(8), /etc/fstab)
//	mpcfs SOURCE MOUNTPOINT -o name=value,...         (mount.fuse3, type fuse.mpcfs)
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// version is set at build time (-ldflags "-X main.version=..."); otherwise
// the VCS revision Go recorded, if any.
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	v := "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return v
}

func main() {
	// mount(8) runs /sbin/mount.mpcfs SOURCE DIR -o OPTIONS for fstab
	// entries of type mpcfs.
	if name := filepath.Base(os.Args[0]); name == "mount.mpcfs" || strings.HasPrefix(name, "mount.fuse.mpcfs") {
		exit(runMountHelper(os.Args[1:]))
	}
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
	case "init":
		err = runInit(os.Args[2:])
	case "rekey":
		err = runRekey(os.Args[2:])
	case "tasks":
		err = runTasks(os.Args[2:])
	case "demo":
		err = runDemo(os.Args[2:])
	case "version", "--version", "-version", "-V":
		fmt.Println("mpcfs", versionString())
		return
	case "-h", "--help", "-help", "help":
		usage()
		return
	default:
		// mount.fuse3 runs `mpcfs SOURCE MOUNTPOINT -o OPTS` for fstab
		// lines of type fuse.mpcfs: the same form as mount.mpcfs.
		if len(os.Args) >= 3 && (strings.Contains(os.Args[1], "/") || os.Args[1] == "mpcfs") && !strings.HasPrefix(os.Args[2], "-") {
			exit(runMountHelper(os.Args[1:]))
		}
		fmt.Fprintf(os.Stderr, "mpcfs: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	exit(err)
}

// exit ends the process: 0 for success and for --help, 2 for bad usage,
// 1 for every other error (printed).
func exit(err error) {
	var ue usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case errors.As(err, &ue):
		fmt.Fprintln(os.Stderr, "mpcfs:", err)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "mpcfs:", err)
	os.Exit(1)
}

// usageError is a command line that cannot be run.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  mpcfs mount [flags] MOUNTPOINT   mount (foreground, or --daemon: return once mounted)
  mpcfs serve [flags]              the MPC REST API and an HTTP origin, no FUSE
  mpcfs init [flags]               create the master key of a new task store
  mpcfs rekey [flags] OLD NEW      re-seal every task from master key file OLD to NEW
  mpcfs tasks [flags]              list the tasks of a task store (mounted or not)
  mpcfs demo [--dir DIR]           make sample HLS, mount it, run a task, check the output
  mpcfs version                    print the version
  mount.mpcfs SOURCE DIR -o OPTS   the mount(8) helper form: each flag as name=value
run "mpcfs COMMAND -h" for a command's flags; docs/admin.md for fstab, systemd,
credentials, the master key, logging and metrics; docs/http.md for serve
`)
}
