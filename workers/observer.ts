/** The observer alone in one process (scale each role independently). */
import { runProcess } from '../src/process';

void runProcess(['observer']);
