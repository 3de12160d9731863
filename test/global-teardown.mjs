import { teardown } from './global-setup.mjs';
export default teardown;
