// Solves a proof-of-work challenge (ALTCHA PoW v2, SHA-256, cost 1) off the page's main
// thread: tries counters until SHA-256(salt || nonce || counter as 4 big-endian bytes)
// starts with the challenge's key prefix. Posts {progress} now and then, then
// {solution: {counter, derivedKey}}.
"use strict";

function bytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i += 1) out[i] = parseInt(hex.substr(2 * i, 2), 16);
  return out;
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

self.onmessage = async (message) => {
  try {
    await solve(message.data);
  } catch (error) {
    // No WebCrypto (a plain-HTTP origin) or a malformed challenge: tell the page.
    self.postMessage({ error: String(error) });
  }
};

async function solve({ challenge, difficulty }) {
  const parameters = challenge.parameters;
  const salt = bytes(parameters.salt);
  const nonce = bytes(parameters.nonce);
  const prefix = parameters.keyPrefix.toLowerCase();
  const input = new Uint8Array(salt.length + nonce.length + 4);
  input.set(salt, 0);
  input.set(nonce, salt.length);
  const view = new DataView(input.buffer);
  const counterAt = salt.length + nonce.length;
  const limit = Math.max(difficulty, 1) * 2;
  for (let counter = 0; counter <= limit; counter += 1) {
    view.setUint32(counterAt, counter, false);
    const digest = await crypto.subtle.digest("SHA-256", input);
    const key = hex(digest).slice(0, parameters.keyLength * 2);
    if (key.startsWith(prefix)) {
      self.postMessage({ solution: { counter, derivedKey: key } });
      return;
    }
    if (counter % 500 === 0) self.postMessage({ progress: Math.min(1, counter / difficulty) });
  }
  self.postMessage({ error: "no solution" });
}
