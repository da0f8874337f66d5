package fs_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mpcfs/mpcfs/control"
)

const (
	mediaHead = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n"
	mediaTail = "#EXT-X-ENDLIST\n"
)

// mediaWith is a VOD media playlist of one segment at uri.
func mediaWith(uri string) string { return mediaHead + "#EXTINF:2,\n" + uri + "\n" + mediaTail }

// masterWith is a master playlist of one variant at uri.
func masterWith(uri string) string {
	return "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\n" + uri + "\n"
}

// TestHostileInput: oversized, endless and nested playlists, and URIs or
// object names that try to leave the input folder or bucket, are each
// refused with a message naming the playlist or URI; the mount keeps
// serving and a good task still succeeds afterwards.
func TestHostileInput(t *testing.T) {
	srcDir, _ := ladder(t)
	st, dir := localStore(t, "media", "public", "other")
	upload(t, st, "media", "vod/", srcDir)
	f := newFixture(t, st, ".mpcfs")
	h := filepath.Join(dir, "media", "vod", "h")
	if err := os.MkdirAll(h, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(h, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	seg, _ := os.ReadFile(filepath.Join(srcDir, "v0", "seg000.ts"))
	write("seg.ts", string(seg))
	os.WriteFile(filepath.Join(dir, "other", "seg.ts"), seg, 0o644)
	// A sparse file over the 64 MiB playlist limit costs no disk.
	if fh, err := os.Create(filepath.Join(h, "huge.m3u8")); err == nil {
		fh.WriteString(mediaHead)
		fh.Truncate(65 << 20)
		fh.Close()
	}
	write("lines.m3u8", "#EXTM3U\n"+strings.Repeat("\n", 1_000_001))
	write("live.m3u8", mediaHead+"#EXTINF:2,\nseg.ts\n")
	write("event.m3u8", mediaHead+"#EXT-X-PLAYLIST-TYPE:EVENT\n#EXTINF:2,\nseg.ts\n")
	write("nested.m3u8", masterWith("inner.m3u8"))
	write("inner.m3u8", masterWith("seg.m3u8"))
	write("self.m3u8", masterWith("self.m3u8"))
	write("upvariant.m3u8", masterWith("../v0/index.m3u8"))
	uris := map[string]string{
		"above.m3u8":   "../../../seg.ts",
		"bucket.m3u8":  "../../../other/seg.ts",
		"sibling.m3u8": "../v0/seg000.ts",
		"abs.m3u8":     "/etc/passwd",
		"http.m3u8":    "http://evil.example/seg.ts",
		"s3.m3u8":      "s3://other/seg.ts",
		"pct.m3u8":     "%2e%2e/%2e%2e/%2e%2e/seg.ts",
		"bslash.m3u8":  `..\..\seg.ts`,
		"query.m3u8":   "seg.ts?token=1",
	}
	for name, uri := range uris {
		write(name, mediaWith(uri))
	}
	cases := []struct{ object, code, mention string }{
		{"huge.m3u8", control.CodeInputFormat, "huge.m3u8"},
		{"lines.m3u8", control.CodeInputFormat, "lines"},
		{"live.m3u8", control.CodeInputFormat, "live"},
		{"event.m3u8", control.CodeInputFormat, "EXT-X-ENDLIST"},
		{"nested.m3u8", control.CodeInputFormat, "vod/h/inner.m3u8"},
		{"self.m3u8", control.CodeInputFormat, "vod/h/self.m3u8"},
		{"upvariant.m3u8", control.CodeInputFormat, "../v0/index.m3u8"},
	}
	for name, uri := range uris {
		cases = append(cases, struct{ object, code, mention string }{name, control.CodeInputFormat, uri})
	}
	for _, c := range cases {
		req := validRequest()
		req["input"].(map[string]any)["object"] = "vod/h/" + c.object
		id := f.create(c.object+".json", req)
		v := f.wait(id)
		if v.Status != control.Failed || !strings.HasPrefix(v.Description, c.code) || !(strings.Contains(v.Description, c.mention) || strings.Contains(v.Description, strconv.Quote(c.mention))) {
			t.Errorf("%s: %s %q, want FAILED %s naming %q", c.object, v.Status, v.Description, c.code, c.mention)
		}
	}
	hostileNames(t, f)
	id := f.create("good.json", validRequest())
	if v := f.wait(id); v.Status != control.Succeeded {
		t.Fatalf("a good task after hostile ones: %s %s", v.Status, v.Description)
	}
}

// hostileNames: object and bucket names in the request that leave their
// bucket are refused at creation (MPC.10202 naming the field).
func hostileNames(t *testing.T, f *fixture) {
	set := func(side, field, value string) func(map[string]any) {
		return func(r map[string]any) { r[side].(map[string]any)[field] = value }
	}
	cases := []struct {
		name, field string
		change      func(map[string]any)
	}{
		{"abs-input", "input.object", set("input", "object", "/vod/master.m3u8")},
		{"dotdot-input", "input.object", set("input", "object", "vod/../../other/master.m3u8")},
		{"dot-input", "input.object", set("input", "object", "vod/./master.m3u8")},
		{"dotdot-output", "output.object", set("output", "object", "out/../../etc")},
		{"dotdot-bucket", "input.bucket", set("input", "bucket", "../media")},
		{"slash-bucket", "output.bucket", set("output", "bucket", "public/x")},
		{"system-bucket", "output.bucket", set("output", "bucket", ".mpcfs")},
		{"dotdot-file-name", "output.file_name", set("output", "file_name", "../x.m3u8")},
		{"slash-file-name", "output.file_name", set("output", "file_name", "a/b.m3u8")},
	}
	for _, c := range cases {
		resp := f.submit(c.name+".json", edit(c.change))
		var e control.APIError
		if err := json.Unmarshal(resp, &e); err != nil || e.Code != control.CodeBadRequest || !strings.Contains(e.Msg, c.field) {
			t.Errorf("%s: response %s, want %s naming %s", c.name, resp, control.CodeBadRequest, c.field)
		}
	}
}
