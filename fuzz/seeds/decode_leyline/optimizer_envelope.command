p-opt2€÷ÄÕ:tamiyoZ
adamw	
lrRI9