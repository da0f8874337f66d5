package fs_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mpcfs/mpcfs/control"
)

// validRequest is a well-formed request over the test ladder; tests break
// one field at a time.
func validRequest() map[string]any {
	return map[string]any{
		"input":  map[string]any{"bucket": "media", "location": "region1", "object": "vod/master.m3u8"},
		"output": map[string]any{"bucket": "public", "location": "region1", "object": "out"},
		"encryption": map[string]any{"hls_encrypt": map[string]any{
			"key": "MDEyMzQ1Njc4OWFiY2RlZg==", "url": "https://keys.example/k1", "algorithm": "AES-128-CBC"}},
	}
}

// edit applies a change to a fresh valid request and marshals it.
func edit(change func(r map[string]any)) []byte {
	r := validRequest()
	change(r)
	b, _ := json.Marshal(r)
	return b
}

func hlsEnc(r map[string]any) map[string]any {
	return r["encryption"].(map[string]any)["hls_encrypt"].(map[string]any)
}

func TestInvalidRequests(t *testing.T) {
	srcDir, _ := ladder(t)
	st, _ := localStore(t, "media", "public")
	upload(t, st, "media", "vod/", srcDir)
	f := newFixture(t, st, ".mpcfs")
	cases := []struct {
		name, code, field string
		body              []byte
	}{
		{"broken JSON", control.CodeBadRequest, "not valid JSON", []byte(`{"input": {"bucket": `)},
		{"empty", control.CodeBadRequest, "empty", []byte("  \n")},
		{"not an object", control.CodeBadRequest, "JSON object", []byte(`[1,2]`)},
		{"trailing data", control.CodeBadRequest, "after the top-level object", append(edit(func(map[string]any) {}), []byte(`{}`)...)},
		{"missing input", control.CodeBadRequest, `"input"`, edit(func(r map[string]any) { delete(r, "input") })},
		{"bucket not a string", control.CodeBadRequest, `input.bucket`, edit(func(r map[string]any) { r["input"].(map[string]any)["bucket"] = 7 })},
		{"missing object", control.CodeBadRequest, `input.object`, edit(func(r map[string]any) { delete(r["input"].(map[string]any), "object") })},
		{"missing output location", control.CodeBadRequest, `output.location`, edit(func(r map[string]any) { delete(r["output"].(map[string]any), "location") })},
		{"wrong location", control.CodeBadRequest, `input.location`, edit(func(r map[string]any) { r["input"].(map[string]any)["location"] = "region2" })},
		{"not a playlist", control.CodeBadRequest, `input.object`, edit(func(r map[string]any) { r["input"].(map[string]any)["object"] = "vod/v0/seg000.ts" })},
		{"missing input object", control.CodeInputNotExist, `input.object`, edit(func(r map[string]any) { r["input"].(map[string]any)["object"] = "vod/nope.m3u8" })},
		{"unknown input bucket", control.CodeBadRequest, `input.bucket`, edit(func(r map[string]any) { r["input"].(map[string]any)["bucket"] = "nobucket" })},
		{"unknown output bucket", control.CodeBadRequest, `output.bucket`, edit(func(r map[string]any) { r["output"].(map[string]any)["bucket"] = "nobucket" })},
		{"path traversal", control.CodeBadRequest, `input.object`, edit(func(r map[string]any) { r["input"].(map[string]any)["object"] = "vod/../../x.m3u8" })},
		{"missing encryption", control.CodeBadRequest, `"encryption"`, edit(func(r map[string]any) { delete(r, "encryption") })},
		{"missing key", control.CodeBadRequest, `encryption.hls_encrypt.key`, edit(func(r map[string]any) { delete(hlsEnc(r), "key") })},
		{"bad base64 key", control.CodeBadRequest, `encryption.hls_encrypt.key`, edit(func(r map[string]any) { hlsEnc(r)["key"] = "%%%not-base64%%%%" })},
		{"short key", control.CodeBadRequest, `encryption.hls_encrypt.key`, edit(func(r map[string]any) { hlsEnc(r)["key"] = "MDEyMzQ1Njc=" })},
		{"key not a string", control.CodeBadRequest, `encryption.hls_encrypt.key`, edit(func(r map[string]any) { hlsEnc(r)["key"] = 12345 })},
		{"bad iv", control.CodeBadRequest, `encryption.hls_encrypt.iv`, edit(func(r map[string]any) { hlsEnc(r)["iv"] = "abc" })},
		{"missing url", control.CodeBadRequest, `encryption.hls_encrypt.url`, edit(func(r map[string]any) { delete(hlsEnc(r), "url") })},
		{"bad algorithm", control.CodeBadRequest, `encryption.hls_encrypt.algorithm`, edit(func(r map[string]any) { hlsEnc(r)["algorithm"] = "AES-256-GCM" })},
		{"unknown field", control.CodeBadRequest, `algorithim`, edit(func(r map[string]any) { hlsEnc(r)["algorithim"] = "AES-128-CBC" })},
		{"negative preview", control.CodeBadRequest, `encryption.preview_duration`, edit(func(r map[string]any) { r["encryption"].(map[string]any)["preview_duration"] = -1 })},
		{"multidrm without mode", control.CodeBadRequest, `encryption.multidrm.streaming_mode`, edit(func(r map[string]any) {
			r["encryption"].(map[string]any)["multidrm"] = map[string]any{"drm_list": []string{"WIDEVINE"}}
		})},
		{"multidrm bad emi", control.CodeBadRequest, `encryption.multidrm.emi`, edit(func(r map[string]any) {
			r["encryption"].(map[string]any)["multidrm"] = map[string]any{"streaming_mode": "HLS", "drm_list": []string{"WIDEVINE"}, "emi": 1}
		})},
		// Issue 15: names the mount or S3 could not hold or would change.
		{"double slash output", control.CodeBadRequest, `output.object`, edit(func(r map[string]any) { r["output"].(map[string]any)["object"] = "p//q" })},
		{"double slash input", control.CodeBadRequest, `input.object`, edit(func(r map[string]any) { r["input"].(map[string]any)["object"] = "vod//master.m3u8" })},
		{"leading slash output", control.CodeBadRequest, `output.object`, edit(func(r map[string]any) { r["output"].(map[string]any)["object"] = "/abs" })},
		{"5000-byte output", control.CodeBadRequest, `output.object`, edit(func(r map[string]any) { r["output"].(map[string]any)["object"] = strings.Repeat("n", 5000) })},
		{"256-byte output segment", control.CodeBadRequest, `output.object`, edit(func(r map[string]any) { r["output"].(map[string]any)["object"] = "a/" + strings.Repeat("n", 256) })},
		{"256-byte file_name", control.CodeBadRequest, `output.file_name`, edit(func(r map[string]any) { r["output"].(map[string]any)["file_name"] = strings.Repeat("n", 251) + ".m3u8" })},
		{"output folder is input folder", control.CodeBadRequest, `output.object`, edit(func(r map[string]any) {
			r["output"].(map[string]any)["bucket"], r["output"].(map[string]any)["object"] = "media", "vod/"
		})},
		{"duplicate output", control.CodeBadRequest, `"output" is given twice`, append(bytes.TrimSuffix(edit(func(map[string]any) {}), []byte("}")),
			[]byte(`,"output":{"bucket":"public","location":"region1","object":"elsewhere"}}`)...)},
		{"duplicate nested key", control.CodeBadRequest, `"output.object" is given twice`, bytes.Replace(edit(func(map[string]any) {}),
			[]byte(`"object":"out"`), []byte(`"object":"out","object":"other"`), 1)},
		{"invalid UTF-8 output", control.CodeBadRequest, `output.object`, bytes.Replace(edit(func(map[string]any) {}),
			[]byte(`"object":"out"`), []byte("\"object\":\"o\xffut\""), 1)},
		{"key as field name", control.CodeBadRequest, `unknown field`, []byte(`{"NqdGrXhbhBpB2mTVi0Nj7w==": 1}`)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := f.submit(strings.ReplaceAll(c.name, " ", "-")+".json", c.body)
			var e control.APIError
			if err := json.Unmarshal(resp, &e); err != nil || e.Code != c.code {
				t.Fatalf("response %s, want error_code %s", resp, c.code)
			}
			if !strings.Contains(e.Msg, c.field) {
				t.Errorf("error_msg %q does not name %s", e.Msg, c.field)
			}
			if strings.Contains(e.Msg, "MDEyMzQ1Njc4OWFiY2RlZg") || strings.Contains(e.Msg, "0123456789abcdef") || strings.Contains(e.Msg, "NqdGrXhbhBpB2mTVi0Nj7w") {
				t.Errorf("error_msg %q contains the key", e.Msg)
			}
		})
	}
	// The mount still serves, and a good request still works.
	if _, err := os.ReadDir(f.path("buckets", "media", "vod")); err != nil {
		t.Fatalf("mount stopped serving after bad requests: %v", err)
	}
	id := f.create("good.json", validRequest())
	if v := f.wait(id); v.Status != control.Succeeded {
		t.Fatalf("a valid task after bad ones: %s %s", v.Status, v.Description)
	}
}

// TestBadPlaylistFails checks that a malformed or incomplete input becomes
// a FAILED task with a reason, not a broken mount.
func TestBadPlaylistFails(t *testing.T) {
	srcDir, _ := ladder(t)
	st, dir := localStore(t, "media", "public")
	upload(t, st, "media", "vod/", srcDir)
	f := newFixture(t, st, ".mpcfs")
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, "media", "vod", name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("garbage.m3u8", "this is not a playlist\n")
	write("missing.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nv0/seg000.ts\n#EXTINF:2,\nv0/gone.ts\n#EXT-X-ENDLIST\n")
	write("escape.m3u8", "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n../../other/seg.ts\n#EXT-X-ENDLIST\n")
	for _, c := range []struct{ object, code, mention string }{
		{"vod/garbage.m3u8", control.CodeInputFormat, "garbage.m3u8"},
		{"vod/missing.m3u8", control.CodeInputNotExist, "vod/v0/gone.ts"},
		{"vod/escape.m3u8", control.CodeInputFormat, "../../other/seg.ts"},
	} {
		req := validRequest()
		req["input"].(map[string]any)["object"] = c.object
		id := f.create(filepath.Base(c.object)+".json", req)
		v := f.wait(id)
		if v.Status != control.Failed || !strings.HasPrefix(v.Description, c.code) || !strings.Contains(v.Description, c.mention) {
			t.Errorf("%s: %s %q, want FAILED %s naming %s", c.object, v.Status, v.Description, c.code, c.mention)
		}
		if _, err := os.Stat(f.path("buckets", "public", "out")); err == nil {
			t.Errorf("%s: a failed task shows outputs", c.object)
		}
	}
}

func TestCancelAndRemount(t *testing.T) {
	srcDir, _ := ladder(t)
	st, dir := localStore(t, "media", "public")
	upload(t, st, "media", "vod/", srcDir)
	f := newFixture(t, st, ".mpcfs")
	keep := f.create("keep.json", validRequest())
	req := validRequest()
	req["output"].(map[string]any)["object"] = "gone"
	gone := f.create("gone.json", req)
	for _, id := range []string{keep, gone} {
		if v := f.wait(id); v.Status != control.Succeeded {
			t.Fatalf("task %s: %s %s", id, v.Status, v.Description)
		}
	}
	if _, err := os.Stat(f.path("buckets", "public", "gone", "v0", "seg000.ts")); err != nil {
		t.Fatalf("output before cancel: %v", err)
	}
	cancel := f.path("control", "cancel")
	if err := os.WriteFile(cancel, []byte(gone+"\n"), 0o600); err != nil {
		t.Fatalf("cancel %s: %v", gone, err)
	}
	if v := f.wait(gone); v.Status != control.Canceled {
		t.Fatalf("after cancel: %s", v.Status)
	}
	if _, err := os.Stat(f.path("buckets", "public", "gone", "v0", "seg000.ts")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a canceled task's output is still there: %v", err)
	}
	err := os.WriteFile(cancel, []byte("999\n"), 0o600)
	if !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("cancel of an unknown task: %v, want EINVAL", err)
	}
	log, _ := os.ReadFile(cancel)
	if !strings.Contains(string(log), `"error_code":"MPC.10211"`) {
		t.Fatalf("control/cancel does not report MPC.10211:\n%s", log)
	}

	// Unmount and mount again over the same store and master key.
	before, _ := os.ReadFile(f.path("buckets", "public", "out", "v0", "index.m3u8"))
	f.unmount()
	f.mount()
	if v := f.wait(keep); v.Status != control.Succeeded {
		t.Fatalf("after remount task %s is %s", keep, v.Status)
	}
	if v := f.wait(gone); v.Status != control.Canceled {
		t.Fatalf("after remount task %s is %s", gone, v.Status)
	}
	after, err := os.ReadFile(f.path("buckets", "public", "out", "v0", "index.m3u8"))
	if err != nil || string(after) != string(before) || len(after) == 0 {
		t.Fatalf("output playlist after remount: %v\n%s", err, after)
	}
	// The task store holds the key only wrapped.
	raw, _ := os.ReadFile(filepath.Join(dir, ".mpcfs", "tasks", keep+".json"))
	if len(raw) == 0 || strings.Contains(string(raw), "MDEyMzQ1Njc4OWFiY2RlZg") || strings.Contains(string(raw), "0123456789abcdef") {
		t.Fatalf("task record missing or holds the key in clear:\n%s", raw)
	}
	if _, err := os.ReadDir(f.path("buckets")); err != nil {
		t.Fatal(err)
	}
}
