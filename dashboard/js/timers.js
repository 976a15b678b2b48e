// Refresh timers that belong to the page on screen: the router stops them all when it
// draws another page.
let timers = [];

/** Calls fn every msEvery until the page changes. */
export function every(msEvery, fn) {
  timers.push(setInterval(fn, msEvery));
}

export function stopAll() {
  timers.forEach(clearInterval);
  timers = [];
}
