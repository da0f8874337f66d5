package main

import (
	"fmt"
	"strings"
)

// ignoredMountOptions are mount(8)'s and systemd's own options in an fstab
// line: they say how and when to mount, not how mpcfs runs.
var ignoredMountOptions = map[string]bool{
	"defaults": true, "auto": true, "noauto": true, "nofail": true, "_netdev": true,
	"user": true, "users": true, "nouser": true, "owner": true, "group": true,
	"rw": true, "ro": true, "exec": true, "noexec": true, "suid": true, "nosuid": true,
	"dev": true, "nodev": true, "atime": true, "noatime": true, "relatime": true, "async": true,
}

// mountHelperArgs turns `mount.mpcfs SOURCE DIR [-o OPTS] [-n] [-s] [-f]
// [-v]` (how mount(8) runs helpers) into `mpcfs mount` arguments: every
// -o name=value becomes --name=value, a bare name --name. SOURCE is an
// http(s) endpoint, a local store folder, or "mpcfs" (the flags say).
// The helper runs as a daemon (mount(8) waits for it) unless -o foreground.
// mount.fuse3 (type fuse.mpcfs) runs `mpcfs SOURCE DIR -o OPTS`, the same.
func mountHelperArgs(args []string) ([]string, error) {
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "-o" && i+1 < len(args):
			opts = append(opts, strings.Split(args[i+1], ",")...)
			i++
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			opts = append(opts, strings.Split(a[2:], ",")...)
		case a == "-t" || a == "-N":
			i++ // type (mpcfs) or namespace: not ours
		case a == "-n" || a == "-s" || a == "-f" || a == "-v" || a == "-i":
			// no mtab, sloppy, fake, verbose, internal-only: nothing to do
		case strings.HasPrefix(a, "-"):
			return nil, usageError{fmt.Sprintf("mount.mpcfs: unknown option %q (pass mpcfs flags as -o name=value)", a)}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, usageError{"usage: mount.mpcfs SOURCE MOUNTPOINT [-o name=value,...]"}
	}
	var out []string
	switch src := pos[0]; {
	case strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://"):
		out = append(out, "--endpoint="+src)
	case strings.HasPrefix(src, "/"):
		out = append(out, "--store="+src)
	}
	foreground := false
	for _, o := range opts {
		name, _, _ := strings.Cut(o, "=")
		switch {
		case o == "":
		case ignoredMountOptions[name] || strings.HasPrefix(name, "x-") || name == "comment":
		case name == "foreground":
			foreground = true
		case name == "daemon":
		default:
			// mount.fuse3 spells FUSE options with underscores
			// (allow_other): flags take dashes.
			out = append(out, "--"+strings.ReplaceAll(name, "_", "-")+o[len(name):])
		}
	}
	if !foreground {
		out = append(out, "--daemon")
	}
	return append(out, pos[1]), nil
}

func runMountHelper(args []string) error {
	margs, err := mountHelperArgs(args)
	if err != nil {
		return err
	}
	return runMount(margs)
}
