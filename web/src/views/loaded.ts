// The pattern of the settings views (users and keys, triggers): data loaded when the project
// changes, and actions that change something and then load again, their error shown.

import { useEffect, useState } from "preact/hooks";

export function useLoaded(load: () => Promise<void>, project: string) {
  const [error, setError] = useState("");
  const reload = async () => {
    try {
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  useEffect(() => {
    reload();
  }, [project]);
  /** Runs `f`, then loads again; an error is shown instead. */
  const run = async (f: () => Promise<unknown>) => {
    setError("");
    try {
      await f();
      await load();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  return { error, run };
}
