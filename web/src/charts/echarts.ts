// Apache ECharts, imported per chart type and rendered as SVG (crisp in exports). Loaded on
// demand so the first paint does not wait for it.
import * as echarts from "echarts/core";
import { LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TooltipComponent, MarkAreaComponent } from "echarts/components";
import { SVGRenderer } from "echarts/renderers";

echarts.use([LineChart, GridComponent, LegendComponent, TooltipComponent, MarkAreaComponent, SVGRenderer]);

export { echarts };
