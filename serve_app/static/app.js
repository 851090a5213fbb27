// omni web client: microphone -> AudioWorklet (16 kHz PCM16) -> WS /v1/duplex -> playback + transcript.
// No build step, no external scripts. window.omniStats exposes counters (used by the browser test).
// A busy server (close 1013: every replica full; or a refused handshake) is retried with backoff,
// never sooner than the server's retry_after_ms, and the page says so; the microphone stays open.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const RATE = 16000;
  const S = window.omniStats = {
    state: 'idle', framesSent: 0, samplesSent: 0, bytesReceived: 0, audioMessages: 0, chunks: 0,
    latenciesMs: [], underruns: 0, textEvents: 0, turnStarts: 0, turnEnds: 0, lastError: null, closeCode: null,
    busyRetries: 0, retryInMs: null,
  };
  const MAX_BUSY_WAIT_MS = 120000;
  let ctx = null, ws = null, node = null, stream = null, playHead = 0, chunkSamples = 6400;
  let stopping = false, retryTimer = null, busyWaitedMs = 0, retryHintMs = null;
  const sentAt = new Map();      // chunk index -> performance.now() when its last sample was sent
  let pendingChunk = null;

  if (params.get('token')) $('token').value = params.get('token');
  if (params.get('aec') === '0') $('aec').checked = false;

  function setStatus(text, cls) {
    S.state = text; const el = $('status'); el.textContent = text; el.className = 'status ' + (cls || '');
  }
  function median(a) { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.floor(s.length / 2)] : null; }
  function showLatency(ms) {
    S.latenciesMs.push(ms);
    $('lat-last').textContent = ms.toFixed(0) + ' ms';
    $('lat-p50').textContent = median(S.latenciesMs).toFixed(0) + ' ms';
  }
  function showIO() {
    $('io').textContent = (S.samplesSent / RATE).toFixed(1) + ' s / ' + (S.bytesReceived / 2 / RATE).toFixed(1) + ' s';
  }

  function play(buf) {
    const pcm = new Int16Array(buf), f = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) f[i] = pcm[i] / 32768;
    const ab = ctx.createBuffer(1, f.length, RATE);       // the context resamples 16 kHz on playback
    ab.copyToChannel(f, 0);
    const src = ctx.createBufferSource(); src.buffer = ab; src.connect(ctx.destination);
    const now = ctx.currentTime;
    // jitter buffer: start 120 ms late (covers the decoder's ~52 ms lag + network jitter)
    if (playHead < now) { if (S.audioMessages > 1) S.underruns++; playHead = now + 0.12; }
    src.start(playHead); playHead += ab.duration;
    $('underruns').textContent = S.underruns;
  }

  function onEvent(ev) {
    switch (ev.type) {
      case 'ready':
        chunkSamples = Math.round(ev.chunk_ms * RATE / 1000);
        S.retryInMs = null; busyWaitedMs = 0; setStatus('connected', 'connected'); break;
      case 'text': S.textEvents++; $('transcript').textContent += ev.text; break;
      case 'text_end': $('transcript').textContent += '\n'; break;
      case 'turn_start': S.turnStarts++; $('speaking').textContent = 'speaking'; $('speaking').className = 'badge on'; break;
      case 'turn_end': S.turnEnds++; $('speaking').textContent = 'silent'; $('speaking').className = 'badge'; break;
      case 'stats':
        S.chunks++; $('chunks').textContent = S.chunks; $('step').textContent = ev.step_ms.toFixed(1) + ' ms';
        if (ev.audio_bytes > 0) pendingChunk = ev.chunk_index;
        else if (sentAt.has(ev.chunk_index)) showLatency(performance.now() - sentAt.get(ev.chunk_index));
        break;
      case 'error':
        if (ev.code === 1013) { retryHintMs = ev.retry_after_ms || null; break; }   // handled on close
        S.lastError = ev.message; setStatus('error ' + ev.code + ': ' + ev.message, 'error'); break;
      case 'done': setStatus('done'); break;
    }
  }

  function busyBackoffMs(attempt, hintMs) {
    const wait = Math.max(Math.min(30000, 500 * 2 ** attempt), hintMs || 0);
    return Math.round(wait * (1 + 0.25 * Math.random()));
  }

  function retryLater(why) {
    const wait = busyBackoffMs(S.busyRetries, retryHintMs);
    if (busyWaitedMs + wait > MAX_BUSY_WAIT_MS) {
      S.lastError = why; setStatus(why + ': gave up after ' + Math.round(busyWaitedMs / 1000) + ' s; try again later', 'error');
      stop(); return;
    }
    S.busyRetries++; S.retryInMs = wait; busyWaitedMs += wait; retryHintMs = null;
    setStatus(why + ': retrying in ' + (wait / 1000).toFixed(1) + ' s (attempt ' + (S.busyRetries + 1) + ')', 'busy');
    retryTimer = setTimeout(() => { retryTimer = null; if (!stopping) connect(); }, wait);
  }

  function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ sample_rate_hz: RATE });
    if ($('token').value) q.set('token', $('token').value);
    let opened = false;
    ws = new WebSocket(`${proto}//${location.host}/v1/duplex?${q}`);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => { S.samplesSent = 0; sentAt.clear(); pendingChunk = null; };   // chunk indices restart per session
    ws.onmessage = (m) => {
      if (typeof m.data === 'string') { const ev = JSON.parse(m.data); if (ev.type === 'ready') opened = true; onEvent(ev); return; }
      S.audioMessages++; S.bytesReceived += m.data.byteLength; showIO();
      if (pendingChunk !== null && sentAt.has(pendingChunk)) showLatency(performance.now() - sentAt.get(pendingChunk));
      pendingChunk = null;
      play(m.data);
    };
    ws.onclose = (e) => {
      S.closeCode = e.code;
      if (!stopping && e.code === 1013) { retryLater('all servers are busy'); return; }
      if (!stopping && !opened && e.code === 1006) { retryLater('server unavailable'); return; }
      if (S.state === 'connected') setStatus('closed ' + e.code + ' ' + e.reason);
      stop();
    };
    ws.onerror = () => { if (opened) setStatus('connection error', 'error'); };
  }

  async function start() {
    $('start').disabled = true;
    stopping = false; S.busyRetries = 0; busyWaitedMs = 0;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: {
        channelCount: 1, echoCancellation: $('aec').checked, noiseSuppression: false, autoGainControl: false } });
      ctx = new AudioContext();
      await ctx.audioWorklet.addModule('/static/worklet.js');
      node = new AudioWorkletNode(ctx, 'pcm16-capture', { processorOptions: { targetRate: RATE, frameSamples: 320 } });
      connect();
      node.port.onmessage = (m) => {
        if (!ws || ws.readyState !== WebSocket.OPEN) return;     // not connected (yet): speech is not sent
        ws.send(m.data);
        const before = S.samplesSent;
        S.framesSent++; S.samplesSent += m.data.byteLength / 2;
        for (let c = Math.floor(before / chunkSamples); c < Math.floor(S.samplesSent / chunkSamples); c++) sentAt.set(c, performance.now());
        if (S.framesSent % 25 === 0) showIO();
      };
      ctx.createMediaStreamSource(stream).connect(node);
      $('stop').disabled = false;
      setStatus('connecting');
    } catch (err) {
      S.lastError = String(err); setStatus('error: ' + err, 'error'); $('start').disabled = false;
    }
  }

  function stop() {
    stopping = true;
    if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
    if (node) { node.port.onmessage = null; node.disconnect(); node = null; }
    if (stream) { stream.getTracks().forEach((t) => t.stop()); stream = null; }
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'end' }));
    $('start').disabled = false; $('stop').disabled = true;
  }

  $('start').addEventListener('click', start);
  $('stop').addEventListener('click', stop);
  if (params.get('autostart') === '1') start();
})();
