// The web app is built into dist/, which the itinera binary embeds (crates/itinera-server/build.rs).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    // the budget (docs/benchmarks.md) is measured by bench/web; this only warns early
    chunkSizeWarningLimit: 900,
    sourcemap: false,
  },
});
