import { useEffect, useState } from 'react';
import { secondsLeft } from './retry';

/** Seconds left until `untilMs`, re-rendered every second until it reaches 0; null without a deadline. */
export function useCountdown(untilMs: number | null): number | null {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (untilMs === null) return;
    // The clock stood still while there was no deadline: catch it up for this one.
    // eslint-disable-next-line react-hooks/set-state-in-effect
    setNow(Date.now());
    const timer = setInterval(() => {
      const n = Date.now();
      setNow(n);
      if (n >= untilMs) clearInterval(timer);
    }, 1000);
    return () => clearInterval(timer);
  }, [untilMs]);
  return untilMs === null ? null : secondsLeft(untilMs, now);
}
