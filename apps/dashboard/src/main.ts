/** The dashboard's entry point, bundled by the aggregator with esbuild (see DashboardAssets). */
import './styles.css';
import { startApp } from './app';

startApp(document.getElementById('app')!);
