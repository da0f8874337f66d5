package fs

import "testing"

// TestParseMountDevice: the mount point is matched in mountinfo's escaped
// form, and of two mounts on one point the later (on top) wins.
func TestParseMountDevice(t *testing.T) {
	info := "22 1 254:0 / / rw - ext4 /dev/vda rw\n" +
		"61 22 0:52 / /tmp/a\\040b rw - fuse.mpcfs mpcfs rw\n" +
		"62 22 0:53 / /tmp/c rw - fuse.mpcfs mpcfs rw\n" +
		"63 62 0:54 / /tmp/c rw - fuse.mpcfs mpcfs rw\n"
	for dir, want := range map[string]string{"/tmp/a b": "0:52", "/tmp/c": "0:54", "/": "254:0"} {
		if got, err := parseMountDevice(info, dir); err != nil || got != want {
			t.Errorf("%q: %q, %v; want %q", dir, got, err, want)
		}
	}
	if _, err := parseMountDevice(info, "/tmp/a"); err == nil {
		t.Error("/tmp/a (a prefix of a mount point) was found")
	}
}
