// Plays an HLS output from mpcfs's HTTP origin with hls.js in headless
// Chromium (Debian's, through puppeteer-core): the page is about:blank, so
// every fetch of the origin is cross-origin and needs its CORS headers.
// The key URL of the task is answered by request interception (the origin
// never serves keys).
//
// Input (stdin): {"url": master playlist URL, "key_url": ..., "key_hex": 32 hex
// digits, "seconds": how far playback must get, "timeout_ms": ...}.
// Output (stdout, last line): {"ok": bool, "time": seconds played,
// "frames": decoded video frames, "key_requests": n, "error": "..."}.
'use strict';
const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

async function main() {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const job = JSON.parse(input);
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--mute-audio', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  let keyRequests = 0;
  try {
    const page = await browser.newPage();
    await page.setRequestInterception(true);
    page.on('request', (req) => {
      if (req.url() === job.key_url) {
        keyRequests++;
        req.respond({ status: 200, contentType: 'application/octet-stream',
          headers: { 'Access-Control-Allow-Origin': '*' }, body: Buffer.from(job.key_hex, 'hex') });
        return;
      }
      req.continue();
    });
    await page.setContent('<!doctype html><video id="v" muted playsinline></video>');
    await page.addScriptTag({ path: path.join(__dirname, 'node_modules', 'hls.js', 'dist', 'hls.min.js') });
    const result = await page.evaluate((url, seconds, timeoutMs) => new Promise((resolve) => {
      const video = document.getElementById('v');
      const hls = new Hls({ enableWorker: false });
      const done = (r) => {
        const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
        resolve(Object.assign({ time: video.currentTime, frames: q.totalVideoFrames || 0 }, r));
        hls.destroy();
      };
      const timer = setTimeout(() => done({ ok: false, error: 'timed out' }), timeoutMs);
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (data.fatal || data.details === 'fragDecryptError' || data.details === 'fragParsingError') {
          clearTimeout(timer);
          done({ ok: false, error: data.type + '/' + data.details });
        }
      });
      hls.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch(() => {}); });
      video.addEventListener('timeupdate', () => {
        if (video.currentTime >= seconds) {
          clearTimeout(timer);
          done({ ok: true });
        }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    }), job.url, job.seconds, job.timeout_ms);
    result.key_requests = keyRequests;
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && (e.stack || e)) }) + '\n');
  process.exit(1);
});
