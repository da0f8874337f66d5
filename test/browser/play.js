// play.js drives player.html in headless Debian Chromium (puppeteer-core,
// no browser download) and prints one JSON line: the play result, or
// {"error": "..."}. Usage: node play.js '<json options>' where options are
//   page:      URL of player.html (http://127.0.0.1:PORT/player/player.html)
//   url:       manifest or playlist URL
//   player:    "shaka" or "hls.js"
//   clearKeys: {kidHex: keyHex} for shaka (ClearKey EME)
//   seek, until, timeoutMs
//   bufferingGoal: seconds Shaka buffers ahead (default its own)
const puppeteer = require('puppeteer-core');

(async () => {
  const opts = JSON.parse(process.argv[2]);
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required', '--disable-gpu', '--mute-audio'],
  });
  let out;
  try {
    const page = await browser.newPage();
    const logs = [];
    page.on('console', (m) => logs.push(m.text()));
    page.on('pageerror', (e) => logs.push('pageerror: ' + e.message));
    await page.goto(opts.page, {waitUntil: 'load'});
    try {
      out = await page.evaluate((o) => window.play(o), opts);
    } catch (e) {
      out = {error: String(e.message || e).split('\n')[0], logs: logs.slice(-10)};
    }
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => {
  process.stdout.write(JSON.stringify({error: 'harness: ' + e.message}) + '\n');
  process.exit(0);
});
