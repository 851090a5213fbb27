// AudioWorklet: microphone (context rate, e.g. 48 kHz) -> 16 kHz mono PCM16 frames.
// Anti-alias: a 2nd-order low-pass (biquad, cutoff 7 kHz) at the input rate, then linear
// interpolation at 16 kHz. Posts Int16Array frames of `frameSamples` samples (transferred).
class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = (options && options.processorOptions) || {};
    this.outRate = o.targetRate || 16000;
    this.frameSamples = o.frameSamples || 320;            // 20 ms at 16 kHz
    this.step = sampleRate / this.outRate;                // input samples per output sample
    this.pos = 0;                                         // next output position (input samples)
    this.prev = 0;                                        // last filtered input sample
    this.frame = new Int16Array(this.frameSamples);
    this.fill = 0;
    // RBJ biquad low-pass, Q = 0.707
    const fc = Math.min(7000, 0.45 * sampleRate), w = 2 * Math.PI * fc / sampleRate;
    const alpha = Math.sin(w) / (2 * Math.SQRT1_2), c = Math.cos(w), a0 = 1 + alpha;
    this.b = [(1 - c) / 2 / a0, (1 - c) / a0, (1 - c) / 2 / a0];
    this.a = [-2 * c / a0, (1 - alpha) / a0];
    this.z = [0, 0];
    this.bypass = sampleRate === this.outRate;
  }
  filter(x) {
    if (this.bypass) return x;
    const y = this.b[0] * x + this.z[0];
    this.z[0] = this.b[1] * x - this.a[0] * y + this.z[1];
    this.z[1] = this.b[2] * x - this.a[1] * y;
    return y;
  }
  push(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.frame[this.fill++] = s < 0 ? s * 32768 : s * 32767;
    if (this.fill === this.frameSamples) {
      this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
      this.frame = new Int16Array(this.frameSamples);
      this.fill = 0;
    }
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) {
      let x = ch[i];
      for (let c = 1; c < input.length; c++) x += input[c][i];   // mix down
      const y = this.filter(x / input.length);
      // emit every output sample whose position lies in (i-1, i]
      while (this.pos <= 1) {
        this.push(this.prev + (y - this.prev) * this.pos);
        this.pos += this.step;
      }
      this.pos -= 1;
      this.prev = y;
    }
    return true;
  }
}
registerProcessor('pcm16-capture', Pcm16Capture);
