// origin.js plays an HLS output from mpcfs's HTTP origin with hls.js or Shaka Player in headless
// Chromium (Debian's, through puppeteer-core).
// The key URL of the task is answered by request interception (the origin
// never serves keys).
//
// Input (stdin): {"player": "hls.js" | "shaka", "page_port": N, "url": master playlist URL,
// "key_url": ..., "key_hex": 32 hex digits, "seconds": how far playback must
// get, "timeout_ms": ...}.
// Output (stdout, last line): {"ok": bool, "time": seconds played,
// "frames": decoded video frames, "key_requests": n, "error": "..."}.
'use strict';
const fs = require('fs');
const path = require('path');
const puppeteer = require('puppeteer-core');

const http = require('http');

// The player page is served by this script on 127.0.0.1:page_port: a
// loopback page is a secure context (Shaka needs Web Crypto for AES-128),
// may fetch from loopback (Chromium's local network access rules), and is
// another origin than mpcfs's, so every fetch of the origin is
// cross-origin: mpcfs serve must run with --cors-origin http://127.0.0.1:page_port.
const PAGE = '<!doctype html><video id="v" muted playsinline></video>';

function servePage(port) {
  return new Promise((resolve, reject) => {
    const srv = http.createServer((req, res) => {
      if (req.url === '/player.html') {
        res.writeHead(200, { 'Content-Type': 'text/html' });
        res.end(PAGE);
        return;
      }
      res.writeHead(404);
      res.end();
    });
    srv.on('error', reject);
    srv.listen(port, '127.0.0.1', () => resolve(srv));
  });
}

async function main() {
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  const job = JSON.parse(input);
  const pageServer = await servePage(job.page_port);
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
    page.on('requestfailed', (req) => process.stderr.write(`request failed: ${req.url()}: ${req.failure() && req.failure().errorText}\n`));
    page.on('console', (m) => process.stderr.write(`console: ${m.text()}\n`));
    await page.goto(`http://127.0.0.1:${job.page_port}/player.html`);
    const shaka = job.player === 'shaka';
    await page.addScriptTag({ path: shaka
      ? path.join(__dirname, 'node_modules', 'shaka-player', 'dist', 'shaka-player.compiled.js')
      : path.join(__dirname, 'node_modules', 'hls.js', 'dist', 'hls.min.js') });
    const result = await page.evaluate((player, url, seconds, timeoutMs) => new Promise((resolve) => {
      const video = document.getElementById('v');
      let stop = () => {};
      let finished = false;
      const done = (r) => {
        if (finished) return;
        finished = true;
        const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
        resolve(Object.assign({ time: video.currentTime, frames: q.totalVideoFrames || 0 }, r));
        stop();
      };
      setTimeout(() => done({ ok: false, error: 'timed out' }), timeoutMs);
      video.addEventListener('timeupdate', () => {
        if (video.currentTime >= seconds) done({ ok: true });
      });
      video.addEventListener('error', () => done({ ok: false, error: 'video element: ' + (video.error && video.error.message) }));
      if (player === 'shaka') {
        shaka.polyfill.installAll();
        const p = new shaka.Player();
        stop = () => { p.destroy(); };
        p.addEventListener('error', (e) => done({ ok: false, error: 'shaka ' + (e.detail && e.detail.code) }));
        p.attach(video)
          .then(() => p.load(url))
          .then(() => video.play())
          .catch((e) => done({ ok: false, error: 'shaka ' + (e && (e.code || e.message || String(e))) }));
        return;
      }
      const hls = new Hls({ enableWorker: false });
      stop = () => { hls.destroy(); };
      hls.on(Hls.Events.ERROR, (_, data) => {
        if (data.fatal || data.details === 'fragDecryptError' || data.details === 'fragParsingError') {
          done({ ok: false, error: data.type + '/' + data.details });
        }
      });
      hls.on(Hls.Events.MANIFEST_PARSED, () => { video.play().catch(() => {}); });
      hls.loadSource(url);
      hls.attachMedia(video);
    }), job.player || 'hls.js', job.url, job.seconds, job.timeout_ms);
    result.key_requests = keyRequests;
    process.stdout.write(JSON.stringify(result) + '\n');
  } finally {
    await browser.close();
    pageServer.close();
  }
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, error: String(e && (e.stack || e)) }) + '\n');
  process.exit(1);
});
