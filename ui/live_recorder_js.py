"""The browser half of the live microphone: capture, number and send every sample, in order.

Kept as Python strings (not a .js file) so an installed wheel carries it without package data.
`RECORDER_JS` runs as a `gr.HTML` component's `js_on_load`, where Gradio provides `element` (the
component), `trigger` (fires a Gradio event) and `server` (calls the component's server
functions over Gradio's authenticated component route). How and why it works is in
ui/live_transport.py.
"""

from __future__ import annotations

import json

# The audio-thread side: runs in an AudioWorklet, hands blocks of mono float samples to the page.
# (A render quantum without input channels is not counted as lost: Chromium delivers those while a
# source starts up, and the audio they stand for arrives in later quanta.)
WORKLET_JS = r"""
class SeacoLiveTap extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(2048);
    this.used = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (input && input.length && input[0].length) {
      const n = input[0].length;
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (let c = 0; c < input.length; c++) sum += input[c][i];
        this.block[this.used++] = sum / input.length;
        if (this.used === this.block.length) this.flush();
      }
    }
    return true;
  }
  flush() {
    const mono = this.block.slice(0, this.used);
    this.port.postMessage(mono, [mono.buffer]);
    this.used = 0;
  }
}
registerProcessor('seaco-live-tap', SeacoLiveTap);
"""

RECORDER_HTML = """
<div class="seaco-live" data-state="idle">
  <div class="seaco-live-row">
    <button type="button" class="primary" data-live="record">
      <i class="seaco-live-dot"></i><span></span></button>
    <button type="button" data-live="stop" disabled><i class="seaco-live-square"></i><span></span></button>
    <span class="seaco-live-clock" data-live="clock">00:00</span>
  </div>
  <div class="seaco-live-level"><i data-live="level"></i></div>
  <div class="seaco-live-info" data-live="info"></div>
</div>
"""

RECORDER_CSS = """
.seaco-live { display: flex; flex-direction: column; gap: 8px; padding: 12px;
  border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg); }
.seaco-live-row { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.seaco-live button { padding: 8px 16px; border-radius: var(--radius-md); cursor: pointer;
  border: 1px solid var(--border-color-primary); }
.seaco-live button.primary { background: var(--button-primary-background-fill);
  color: var(--button-primary-text-color); }
.seaco-live button:disabled { opacity: 0.5; cursor: not-allowed; }
.seaco-live-dot, .seaco-live-square { display: inline-block; width: 0.7em; height: 0.7em;
  margin-right: 0.4em; background: currentColor; vertical-align: -0.05em; }
.seaco-live-dot { border-radius: 50%; }
.seaco-live-clock { font-variant-numeric: tabular-nums; margin-left: auto; }
.seaco-live-level { height: 6px; background: var(--background-fill-secondary); border-radius: 3px; }
.seaco-live-level i { display: block; height: 100%; width: 0; background: var(--color-accent);
  border-radius: 3px; transition: width 0.1s; }
.seaco-live-info { font-size: var(--text-sm); color: var(--body-text-color-subdued); }
.seaco-live[data-state=recording] .seaco-live-clock { color: var(--color-accent); }
.seaco-live[data-state=error] .seaco-live-info,
.seaco-live[data-dropped=yes] .seaco-live-info { color: var(--error-text-color); }
"""

# Page side. Words come from ui/i18n.py's tables (`recorder_js` fills them in), in the language the
# page's switch saved (in localStorage; else the default), and follow a switch at once. State lives
# in this closure, never in the template, so nothing Gradio re-renders can lose audio. Each take:
# open (the server gives a ticket), capture into a queue, send the queue in order (one request in
# flight; what piles up while one is slow goes in the next, up to MAX_SEND_S; a failed request is
# retried with the same start, which the server treats as a duplicate), then on Stop send the rest
# with final=true and only then fire "stopped", so the server finalises a recording it has all of.
# data-* attributes on the root say what was sent, for the user and tests.
RECORDER_JS = r"""
const root = element.querySelector('.seaco-live');
const recordButton = root.querySelector('[data-live=record]');
const stopButton = root.querySelector('[data-live=stop]');
const info = root.querySelector('[data-live=info]');
const clock = root.querySelector('[data-live=clock]');
const level = root.querySelector('[data-live=level]');
const SEND_EVERY_MS = 250;
const MAX_SEND_S = 2;
const RETRY_MS = 500;
const WORKLET = __WORKLET__;
const WORDS = __WORDS__;
let take = null;
let lastTake = null;  // the take the info line describes once it is over
let said = ['ready', {}];  // the info line's words, kept to redraw it in another language

function language() {
  const chosen = localStorage.getItem(__STORAGE_KEY__) || __DEFAULT_LANG__;
  return chosen.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en';
}

function w(key, values) {
  let text = (WORDS[language()] || WORDS.en)[key] || WORDS.en[key] || key;
  for (const [name, value] of Object.entries(values || {})) text = text.replace(`{${name}}`, value);
  return text;
}

function say(key, values) {
  said = [key, values || {}];
  info.textContent = key === 'progress' ? describe(take || lastTake || {}) : w(key, values);
}

function label() {
  recordButton.querySelector('span').textContent = w('record');
  stopButton.querySelector('span').textContent = w('stop');
  say(...said);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function show(state, key, values) {
  root.dataset.state = state;
  recordButton.disabled = !(state === 'idle' || state === 'error');
  stopButton.disabled = state !== 'recording';
  if (key !== undefined) say(key, values);
}

function describe(t) {
  const rate = t.rate || 1;
  const parts = [w('sent', {seconds: ((t.sent || 0) / rate).toFixed(1)})];
  if (t.pending > rate) parts.push(w('waiting', {seconds: (t.pending / rate).toFixed(1)}));
  if (t.dropped > 0) parts.push(w('dropped', {seconds: t.dropped.toFixed(1)}));
  if (t.retrying) parts.push(w('retrying'));
  if (t.done) parts.push(w('done'));
  return parts.join(' · ');
}

function publish(t) {
  root.dataset.rate = String(t.rate || 0);
  root.dataset.sentFrames = String(t.sent);
  root.dataset.pendingFrames = String(t.pending);
  root.dataset.droppedS = String(t.dropped);
  root.dataset.dropped = t.dropped > 0 ? 'yes' : 'no';
  root.dataset.ticket = t.ticket || '';
}

function base64Int16(blocks, frames) {
  const pcm = new Int16Array(frames);
  let at = 0;
  for (const block of blocks) {
    for (let i = 0; i < block.length; i++) {
      const v = Math.max(-1, Math.min(1, block[i]));
      pcm[at++] = v < 0 ? Math.round(v * 32768) : Math.round(v * 32767);
    }
  }
  const bytes = new Uint8Array(pcm.buffer);
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function takeFromQueue(t, limit) {
  // The first blocks of the queue up to `limit` frames (splitting one if needed), left in place.
  const blocks = [];
  let frames = 0;
  for (const block of t.queue) {
    if (frames + block.length > limit) {
      if (limit > frames) blocks.push(block.subarray(0, limit - frames));
      frames = Math.min(limit, frames + block.length);
      break;
    }
    blocks.push(block);
    frames += block.length;
  }
  return [blocks, frames];
}

function dropFromQueue(t, frames) {
  while (frames > 0 && t.queue.length) {
    const block = t.queue[0];
    if (block.length <= frames) {
      t.queue.shift();
      frames -= block.length;
    } else {
      t.queue[0] = block.subarray(frames);
      frames = 0;
    }
  }
}

async function pump(t) {
  while (true) {
    if (!t.ending) await sleep(t.retrying ? RETRY_MS : SEND_EVERY_MS);
    if (!t.pending && !t.ending) continue;
    const [blocks, frames] = takeFromQueue(t, Math.round(MAX_SEND_S * t.rate));
    const final = t.ending && frames === t.pending;
    let ack;
    try {
      ack = await server.live_push({ticket: t.ticket, start: t.sent, rate: t.rate, final,
                                    pcm: base64Int16(blocks, frames)});
    } catch (error) {
      ack = undefined;
    }
    if (!ack || !ack.ok) {
      if (ack && ack.fatal) {
        t.failed = ack.error;
        show('error', 'error', {error: ack.error});
        stopCapture(t);
        break;
      }
      t.retrying = true;  // lost request or answer: send the same audio again
      say('progress');
      if (t.ending) await sleep(RETRY_MS);
      continue;
    }
    t.retrying = false;
    dropFromQueue(t, frames);
    t.pending -= frames;
    t.sent += frames;
    t.dropped = ack.dropped_s || 0;
    publish(t);
    say('progress');
    if (final) break;
  }
  if (!t.failed) {
    show('stopping', 'finishing');
    trigger('stopped', {ticket: t.ticket});
    t.done = true;
    show('idle', 'progress');
  }
  take = null;
}

function stopCapture(t) {
  if (t.clockTimer) clearInterval(t.clockTimer);
  if (t.node) t.node.port.onmessage = null;
  for (const track of (t.stream ? t.stream.getTracks() : [])) track.stop();
  if (t.context) t.context.close().catch(() => {});
  level.style.width = '0';
}

async function record() {
  if (take) return;
  const t = {queue: [], pending: 0, sent: 0, dropped: 0, ending: false, retrying: false, rate: 0,
             ticket: null};
  take = t;
  lastTake = t;
  show('starting', 'opening');
  try {
    // Everything that takes time comes before the microphone opens, so capture starts with it.
    t.context = new AudioContext();
    const url = URL.createObjectURL(new Blob([WORKLET], {type: 'text/javascript'}));
    await t.context.audioWorklet.addModule(url);
    URL.revokeObjectURL(url);
    t.rate = t.context.sampleRate;
    t.stream = await navigator.mediaDevices.getUserMedia({audio: {
      channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
    const source = t.context.createMediaStreamSource(t.stream);
    t.node = new AudioWorkletNode(t.context, 'seaco-live-tap');
    t.node.port.onmessage = (event) => {
      const mono = event.data;
      t.queue.push(mono);
      t.pending += mono.length;
      let sum = 0;
      for (let i = 0; i < mono.length; i++) sum += mono[i] * mono[i];
      const db = 10 * Math.log10(sum / mono.length + 1e-10);
      level.style.width = `${Math.max(0, Math.min(100, (db + 60) * 100 / 60))}%`;
    };
    source.connect(t.node);
    t.node.connect(t.context.destination);  // pulls the graph; the tap writes silence
    await t.context.resume();
    const hotwords = document.querySelector('#live-hotwords textarea, #live-hotwords input');
    const opened = await server.live_open({rate: t.rate, hotwords: hotwords ? hotwords.value : ''});
    if (!opened || !opened.ok) throw new Error(opened ? opened.error : w('no_answer'));
    t.ticket = opened.ticket;
  } catch (error) {
    stopCapture(t);
    take = null;
    show('error', 'error', {error: error && error.message ? error.message : String(error)});
    return;
  }
  const started = Date.now();
  t.clockTimer = setInterval(() => {
    const s = Math.floor((Date.now() - started) / 1000);
    clock.textContent = `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
    say('progress');
    publish(t);
  }, 250);
  publish(t);
  show('recording', 'progress');
  trigger('started', {ticket: t.ticket});
  pump(t);
}

function stop() {
  const t = take;
  if (!t || t.ending || !t.ticket) return;
  stopCapture(t);
  t.ending = true;
  show('stopping', 'sending_rest');
}

recordButton.addEventListener('click', record);
stopButton.addEventListener('click', stop);
// The language switch sets <html lang>: redraw the words when it changes.
new MutationObserver(label).observe(document.documentElement, {attributes: true, attributeFilter: ['lang']});
label();
show('idle');
"""


def recorder_js(words: dict[str, dict[str, str]], storage_key: str, default_lang: str) -> str:
    """The page script with its words ({language: {key: text}}) and language settings filled in."""
    return (RECORDER_JS.replace("__WORKLET__", json.dumps(WORKLET_JS.strip()))
            .replace("__WORDS__", json.dumps(words, ensure_ascii=False))
            .replace("__STORAGE_KEY__", json.dumps(storage_key))
            .replace("__DEFAULT_LANG__", json.dumps(default_lang)))
