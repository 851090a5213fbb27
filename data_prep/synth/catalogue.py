"""Scenario catalogue for the template writer: slot fillers and turn templates.

Four scenarios (OmniChat / ShareChatX): ``chitchat`` (everyday topics), ``emotion`` (the user
expresses one of 7 emotions, the assistant answers in a fitting style), ``event`` (a sound
happens in the user's room and the talk is about it), ``music`` (a music bed plays under the
user and the talk is about it). Templates use ``{slot}`` fields filled from :data:`SLOTS`.
Numbers are written as words so that ASR-based QC compares like with like.
"""
from __future__ import annotations

SLOTS: dict[str, tuple[str, ...]] = {
    "activity": ("hiking", "baking bread", "learning the guitar", "painting", "running", "gardening", "swimming",
                 "knitting", "rock climbing", "cycling to work", "learning Spanish", "playing chess", "writing a novel",
                 "taking photos", "yoga", "cooking curry", "fixing my bike", "birdwatching", "camping", "reading poetry",
                 "building a bookshelf", "practicing piano", "training my puppy", "making pottery", "ice skating",
                 "studying astronomy", "volunteering at the shelter", "brewing coffee", "sewing a jacket",
                 "playing tennis", "meditating", "kayaking", "growing tomatoes", "learning to code", "dancing salsa",
                 "sketching portraits", "surfing", "collecting stamps", "restoring old furniture", "baking cookies",
                 "playing the drums", "learning Japanese", "making candles", "trail running", "bouldering",
                 "playing badminton", "doing crosswords", "woodworking", "journaling", "fermenting vegetables",
                 "learning sign language", "playing the violin", "rowing", "doing pilates", "making jam",
                 "building model trains", "learning magic tricks", "foraging mushrooms", "calligraphy",
                 "playing basketball", "skateboarding", "baking sourdough", "podcasting", "quilting",
                 "hiking with the dog", "learning to juggle", "stargazing", "making soap", "bird photography"),
    "place": ("the beach", "the mountains", "my grandmother's house", "the city center", "the old library",
              "a small village", "the farmers market", "the lake", "the museum", "the train station", "a quiet cafe",
              "the botanical garden", "the zoo", "my office", "the countryside", "the harbor", "an island",
              "the national park", "the night market", "the stadium", "the science center", "the bakery downtown",
              "the river trail", "a mountain cabin", "the aquarium", "my cousin's apartment", "the art gallery",
              "the flower festival", "the old castle", "the waterfall", "the ski resort", "the city park",
              "the public pool", "the concert hall", "the campsite", "the lighthouse", "the vineyard",
              "the book fair", "the climbing gym", "the food court", "the seaside town", "the flea market",
              "the planetarium", "the hot springs", "the garden center", "the community hall", "the old port"),
    "food": ("pasta", "a vegetable soup", "pancakes", "sushi", "a lemon cake", "tacos", "roasted chicken", "fried rice",
             "a fresh salad", "dumplings", "pizza", "apple pie", "a mushroom risotto", "banana bread", "noodle soup",
             "grilled fish", "a chocolate tart", "lentil stew", "spring rolls", "a cheese omelette", "corn bread",
             "a pumpkin soup", "falafel", "a beef stew", "shrimp curry", "a potato gratin", "blueberry muffins",
             "a Greek salad", "stuffed peppers", "chili", "a fruit crumble", "ramen", "a spinach quiche",
             "roast vegetables", "carrot cake", "a bean burrito", "chicken skewers", "a tomato tart"),
    "person": ("my sister", "my brother", "my best friend", "my neighbor", "my boss", "my roommate", "my dad",
               "my mom", "my coworker", "my grandfather", "my aunt", "my teacher", "an old classmate", "my partner",
               "my little cousin", "the new intern", "my landlord", "my uncle", "my team lead", "my nephew",
               "my niece", "my grandmother", "my old roommate", "my gym buddy", "my piano teacher",
               "my husband", "my wife", "my son", "my daughter", "my flatmate", "my classmate", "my mentor"),
    "time": ("this weekend", "tomorrow morning", "tonight", "next month", "on Friday", "this summer", "next week",
             "later today", "on Sunday afternoon", "over the holidays", "this evening", "in the spring",
             "on Saturday", "after work", "next Tuesday", "before the end of the month", "in the autumn",
             "during the break", "on my day off", "at the end of the week", "first thing tomorrow"),
    "thing": ("a new phone", "an old camera", "a bicycle", "a winter coat", "a houseplant", "a laptop",
              "a pair of running shoes", "a board game", "a coffee machine", "a tent", "a guitar", "a desk lamp",
              "a backpack", "a watch", "a sofa", "a telescope", "a rice cooker", "a bookshelf", "an umbrella",
              "a pair of headphones", "an electric scooter", "a blender", "a tablet", "a sewing machine",
              "a camping stove", "a smart speaker", "a kayak", "a vacuum cleaner", "an e-reader", "a drone"),
    "show": ("a detective series", "a cooking show", "a nature documentary", "a space movie", "an old western",
             "a romantic comedy", "a history podcast", "a fantasy novel", "a mystery novel", "a travel vlog",
             "a baking competition", "a science fiction series", "a comedy special", "a biography of a painter",
             "a true crime podcast", "an animated film", "a sports documentary", "a poetry collection"),
    "task": ("a report for work", "my tax forms", "a big presentation", "a job application", "my thesis",
             "a budget spreadsheet", "a cover letter", "a team project", "an online course", "my portfolio",
             "a grant proposal", "the quarterly review", "a research paper", "a client pitch", "my study notes"),
    "adj": ("wonderful", "relaxing", "exhausting", "surprising", "strange", "lovely", "busy", "peaceful", "fun",
            "tiring", "exciting", "quiet", "chaotic", "memorable", "pleasant", "interesting", "fantastic", "long",
            "lazy", "magical", "hectic", "cozy", "unusual", "perfect", "rainy", "sunny"),
    "greet": ("Hi.", "Hey there.", "Hello.", "Good morning.", "Good evening.", "Hey.", "Hi there.", "Hello again.",
              "Okay, so.", "Hey, quick question.", "Hi, it is me again.", "Good afternoon.", "Hey, got a minute?",
              "Hello there.", "Hi, how are you?", "Morning.", "Hey, you there?", "Okay, listen.", "Hi, so."),
    "ack": ("Sure.", "Of course.", "Absolutely.", "Got it.", "Okay.", "Sounds good.", "I see.", "Right.", "Alright.",
            "That makes sense.", "Good question.", "Oh, nice.", "Great.", "Fair enough.", "Understood.", "Oh, I see.",
            "Good idea.", "Hmm, okay.", "Interesting.", "Nice.", "Ah, okay.", "Totally.", "Sure thing."),
    "filler": ("um,", "uh,", "well,", "you know,", "hmm,", "so,", "like,", "I mean,", "okay, so", "er,",
               "let me think,", "honestly,", "anyway,", "right, so"),
    # closing turns: templates with alternations so that closings differ across dialogues
    "thanks": ("[Thanks|Thank you|Cheers], that [helps|helped|is helpful][ a lot|| a bunch].",
               "Thank you so much[| for this| for your help| for listening].",
               "[Great|Perfect|Cool|Awesome], thanks[| a lot| again].",
               "Okay, I will [try that|give it a go|do that] {time}.",
               "That is really [useful|helpful|good advice], thanks.",
               "Alright, that sounds like a [plan|good plan|good idea].",
               "[Okay|Right|Good], I [feel better|know what to do|have a plan] now. [Thanks.|Thank you.]",
               "I will [tell|ask] {person} [about it|what they think] {time}. Thanks!",
               "[Nice|Great], I [think I am ready|can work with that]. [Bye for now.|Talk later.|That is all.]",
               "[You are the best|That was quick], thanks[| so much]."),
    "bye": ("You are [welcome|very welcome]. Have a [great|lovely|good|nice] [day|evening|weekend].",
            "[Happy|Glad] to help. [Enjoy!|Have fun!|Good luck!]",
            "Anytime. Good luck with [it|everything|that] {time}.",
            "My pleasure. [Talk to you soon.|See you next time.|Take care.]",
            "Glad I could help. [Let me know how it goes.|Tell me how it turns out.|Come back anytime.]",
            "No problem at all. [Take care.|Bye for now.|Enjoy the rest of your day.]",
            "[Of course.|Sure thing.|Anytime.] [Have a good one.|I hope it goes well.|All the best.]",
            "[Good luck|Best of luck] {time}. [You have got this.|I am sure it will go well.]"),
}

# Chit-chat: topic families; each keeps one topic slot for the whole dialogue. Templates may use
# inline alternations "[a|b|c]" (one drawn per use) on top of {slots}.
CHITCHAT_FAMILIES = {
    "hobby": {
        "user_open": (
            "{greet} I [have been thinking about|want to get into|am curious about|keep hearing about] {activity}. "
            "[Any tips?|Where do I start?|Is it hard?|What do you think?]",
            "{greet} [Do you think|Would you say] {activity} is a good hobby for [a beginner|someone busy|me]?",
            "So {person} [wants me to try|keeps talking about|just started] {activity}. [Should I join?|Is it fun?]",
            "{greet} I keep putting off {activity}. How do I [get started|stay motivated|make it a habit]?",
            "{greet} I tried {activity} {time_past} and it was [harder|more fun|more tiring] than I expected."),
        "assistant": (
            "{ack} {activity_cap} is [a great choice|really rewarding|a lovely hobby]. [Start small|Go slowly|Keep it light] "
            "and [enjoy the process|be patient with yourself|have fun with it].",
            "{ack} [Maybe|Perhaps|I would] [begin with|try] a short session {time} and see how it feels.",
            "[Honestly,|To be honest,|In my experience,] {activity} gets [easier|more fun|much better] after the first "
            "[few tries|couple of weeks|handful of sessions].",
            "{ack} [Set|Pick] a small goal for {time}, [then build from there|and tell {person} about it].",
            "That sounds [great|promising|like a good plan]. [You could|Why not] invite {person} along? "
            "[Company|A partner|A friend] makes it [easier to keep going|more fun]."),
        "user_follow": (
            "{filler} what if I only have [an hour|half an hour|a few minutes] a day?",
            "Do I need [any special equipment|to spend a lot of money|lessons] for that?",
            "[And|But] what if I [get bored|give up|am not good at it]?",
            "How [often|long] should I [practice|do it] at the start?",
            "Would it be [better|easier] to [start|do it] with {person}?"),
        "assistant_follow": (
            "[Even|Just] [twenty minutes|a short session] [a few times a week|every other day] is enough [at first|to start].",
            "[Not really.|No, not at first.] [Borrow what you can|Start with the basics] and [upgrade later|see if you like it].",
            "That is [normal|okay|completely fine]. [Take a break|Switch things up] and [come back to it|try again] {time}.",
            "[Consistency|A regular rhythm] matters more than [talent|speed|long sessions]."),
    },
    "trip": {
        "user_open": (
            "{greet} I [want|am planning|would like] to [go to|visit] {place} {time}. [Is that a good idea?|Any advice?]",
            "{greet} Can you help me plan a [relaxing|fun|cheap|quiet] day at {place}?",
            "I had a {adj} day at {place} with {person}.",
            "{greet} {person} and I [might go|are going] to {place} {time}. What should we [bring|do there]?"),
        "assistant": (
            "{ack} {place_cap} is [lovely|beautiful|wonderful] {time}. [Bring water|Pack a snack|Wear comfortable shoes] "
            "and [check the weather|leave early|take a jacket].",
            "That sounds {adj}! What did you [like most|enjoy the most] about {place}?",
            "[I would|You could] [start early|go in the morning], [walk around|explore] {place}, "
            "then [relax|have lunch] [somewhere quiet|by the water|at a cafe].",
            "{ack} [Going with {person} sounds fun.|It is a nice place for {person} too.] "
            "[Plan one main thing|Keep the plan simple] and leave room to wander."),
        "user_follow": (
            "Hmm, and what if the weather is [bad|rainy|too hot]?",
            "[How|When] should we get there?",
            "Is it [crowded|expensive|busy] [on weekends|in the afternoon]?",
            "{filler} do you think {person} would [like|enjoy] it?"),
        "assistant_follow": (
            "[If it rains,|On a rainy day,] [a museum|a cafe|an indoor market] nearby is a [good|nice] backup.",
            "[Leaving early|Going on a weekday] [avoids the crowds|is usually quieter].",
            "[I think so.|Probably!] [Ask them|Check with them] what they [would enjoy most|want to see]."),
    },
    "cooking": {
        "user_open": (
            "{greet} Do you know a [simple|quick|good] way to make {food}?",
            "{greet} {person} and I are [planning|trying] to cook {food} {time}. How should we start?",
            "{greet} My {food} [came out|turned out] [too dry|bland|a bit burnt] [again|last time]. What went wrong?",
            "I want to [surprise|cook for] {person} {time}. Is {food} [a good idea|too hard]?"),
        "assistant": (
            "{ack} For {food}, [prepare|measure] all the ingredients first, then [take it step by step|go slowly].",
            "[{food_cap} is a great choice.|You cannot go wrong with {food}.] [Keep the heat medium|Taste as you go] "
            "and [do not rush it|season at the end].",
            "[That usually means|It often happens when] the heat is too [high|strong]. [Try|Use] a lower heat "
            "[and a bit more time|and check it often].",
            "{ack} [Cook it once before|Do a test run] so {time} goes [smoothly|without stress]."),
        "user_follow": ("[What|Which] [side dish|drink] goes well with it?", "Can I make it [ahead of time|the day before]?",
                        "{filler} how long does it [take|need] [in total|to cook]?", "Is there a [vegetarian|lighter] version?"),
        "assistant_follow": ("[A fresh salad|Some bread|Roasted vegetables] [goes|works] [nicely|well] with it.",
                             "[Yes,|Mostly,] [it keeps well|it even tastes better] [the next day|after a night in the fridge].",
                             "[About|Roughly] [forty minutes|an hour] [in total|from start to finish], [most of it waiting|mostly hands off]."),
    },
    "purchase": {
        "user_open": (
            "{greet} I just bought {thing} and I am not sure I [like|need] it.",
            "{greet} {person} gave me {thing} as a gift. What can I do with it?",
            "{greet} [Should I buy|Is it worth getting] {thing} {time}?"),
        "assistant": (
            "{ack} Give it [a week|a few days]. If you still do not like it, [you can return it|pass it on].",
            "[How nice of {person}!|What a thoughtful gift.] [Try using it|Give it a spot] [every day|somewhere visible] for a while.",
            "[It depends|That depends] on how often you [would use it|need it]. [Make a short list|Think about] what you really need."),
        "user_follow": ("[Is it|Would it be] rude to [return|exchange] a gift?", "What should I [look for|check] before buying?",
                        "{filler} [maybe|what if] I [sell|give] it to {person}?"),
        "assistant_follow": ("[Not if you are kind about it.|It is fine if you are honest.] [Thank them first.|Say thanks first.]",
                             "[Check|Look at] the [reviews|return policy|warranty] and [compare a few|wait for a sale]."),
    },
    "media": {
        "user_open": (
            "{greet} I just [finished|started|watched] {show}. [Have you heard of it?|It was {adj}.|What should I try next?]",
            "{greet} {person} [recommended|keeps talking about] {show}. [Is it worth it?|Should I give it a go?]",
            "{greet} Can you suggest something like {show} for {time}?",
            "I [stayed up late with|binged|got hooked on] {show} {time_past}. [Now I am tired.|It was so good.]"),
        "assistant": (
            "{ack} If you liked {show}, [try something|look for something] [slower|lighter|with a similar mood] next.",
            "[Oh,|Ah,] {show} [sounds|seems] [fun|great|like a good pick]. What did you [like most|enjoy] about it?",
            "[It is worth a try.|Give it an episode or two.] [If it does not grab you,|If you are bored,] [stop there|switch to something else].",
            "{ack} [Maybe|Perhaps] [watch|read] it with {person} {time}. [It is more fun to talk about it.|Then you can compare notes.]"),
        "user_follow": ("[Is it|Would it be] [good|okay] for [kids|a family evening|a long train ride]?",
                        "{filler} [how long|how many episodes] is it?", "Do you think {person} would [like|enjoy] it?",
                        "[What|Which] [part|episode|chapter] is the best?"),
        "assistant_follow": ("[Most people|Many people] say it gets [better|really good] [halfway through|after a slow start].",
                             "[It depends on their taste.|Hard to say.] [Show them the first part|Tell them the premise] and see.",
                             "[Take breaks|Pace yourself] [between episodes|between chapters], [especially at night|so it lasts longer]."),
    },
    "work": {
        "user_open": (
            "{greet} I have to finish {task} [by|before] {time} and I have [not started|barely started].",
            "{greet} Can you help me [plan|organize] {task}? [It feels huge.|I do not know where to begin.]",
            "{greet} {person} asked me to [review|help with] {task}. [How do I say no?|Should I?]",
            "I keep [procrastinating on|avoiding] {task}. [Any tricks?|What should I do?]"),
        "assistant": (
            "{ack} [Split|Break] {task} into [three|a few|small] [parts|steps] and [start with the easiest|do one today].",
            "[First,|To start,] [write a rough outline|list what you already have]. [Polish it later.|Perfect comes later.]",
            "[It is okay to say no.|You can say no kindly.] [Tell {person} you are busy|Offer a smaller favor] {time}.",
            "[Try|Use] [a timer|short sprints] of [twenty-five minutes|half an hour] with [a short break|a walk] between them."),
        "user_follow": ("What if I [run out of time|miss the deadline]?", "{filler} should I ask {person} for help?",
                        "How do I [stay focused|avoid distractions] at home?", "[Is it|Would it be] bad to [work late|skip lunch]?"),
        "assistant_follow": ("[Tell them early.|Ask for more time early.] [Most people|People] [understand|appreciate honesty].",
                             "[Put your phone|Keep your phone] [in another room|on silent] and [close other tabs|clear your desk].",
                             "[Rest matters.|Sleep helps more.] [A tired mind|Working late] [makes more mistakes|slows you down]."),
    },
}
# Optional extra parts the writer attaches to a turn (each drawn independently, see scripts.py).
ASSISTANT_TAILS = ("[How does that sound?|Does that help?|What do you think?|Would that work for you?]",
                   "[Let me know|Tell me] [how it goes|if you want more ideas|what you decide].",
                   "[Want|Would you like] [a few more ideas|some more tips|me to go on]?",
                   "[It is up to you, of course.|No pressure, though.|Just an idea.]",
                   "[I hope that helps.|Hope that is useful.|That is my take, anyway.]",
                   "[Anything else on your mind?|Anything else I can help with?|Is there anything else?]")
USER_TAILS = ("[What do you think?|Any ideas?|Does that make sense?|Is that weird?]",
              "[I am not sure.|I cannot decide.|I keep going back and forth.]",
              "[{person} thinks|{person} says] [it is a good idea|I should|I am overthinking it].",
              "[Just wondering.|Just curious.|Be honest.]")
# emotion scenario: leads/tails for the assistant keyed by the tone of the user's emotion
EMOTION_TONE = {"happy": "positive", "surprised": "positive", "sad": "negative", "angry": "negative",
                "fearful": "negative", "disgusted": "negative", "neutral": "neutral"}
EMPATHY_LEADS = {
    "positive": ("[Oh!|Wow!|Oh wow.|Really?]", "[What a moment.|How exciting.|That is big.]",
                 "[Thank you for telling me.|Thanks for sharing that.|I am glad you told me.]"),
    "negative": ("[Oh.|Oh no.|Hmm.|Oh dear.]", "[I hear you.|I understand.|I get it.]",
                 "[Thank you for telling me.|Thanks for sharing that.|I am glad you told me.]"),
    "neutral": ("[Okay.|Alright.|Sure.|Right.]", "[Good thinking.|Fair enough.|I can help with that.]"),
}
EMPATHY_TAILS = {
    "positive": ("[You deserve it.|Enjoy every bit of it.|That made my day.]",
                 "[How do you feel right now?|What happens next?|Who else knows?]",
                 "[Savor it.|Remember this feeling.|Take a moment to enjoy it.]"),
    "negative": ("[I am here for you.|I am here if you need me.|You are not alone in this.]",
                 "[How are you feeling now?|Do you want to talk about it?|What would help right now?]",
                 "[Take it one step at a time.|Be kind to yourself.|Give yourself some time.]"),
    "neutral": ("[Does that help?|Shall we start?|What comes first?]",
                "[We can adjust it later.|Nothing has to be perfect.|Keep it simple.]"),
}
EMOTION_USER_TAILS = ("[I do not know.|I had to tell someone.|It has been quite a day.]",
                      "[I keep thinking about it.|I cannot stop thinking about it.|It is all I can think about.]",
                      "[Sorry, I just needed to say it.|Is that strange?|Does that make sense?]")
CHITCHAT = {  # flat pools used by other scenarios for generic filler turns
    "assistant": tuple(t for f in CHITCHAT_FAMILIES.values() for t in f["assistant_follow"]),
}

EMOTION = {  # user emotion -> (situations, assistant replies, assistant style (emotion, pitch, speed))
    "happy": (("I just got the job at {place}!", "{person} is coming to visit {time}, I am so excited!",
               "I finally finished {activity_ger} and it turned out {adj}!", "I passed my [exam|driving test|final exam] [today|this morning]!",
               "We adopted a puppy {time} and she is adorable!", "My {food} came out perfect on the first try!"),
              ("That is [fantastic|amazing|wonderful] news! Congratulations!", "Wow, I am so happy for you! You earned it.",
               "That is wonderful! How are you going to celebrate?", "Amazing! Tell me everything."),
              ("happy", "high", "fast")),
    "sad": (("I feel really lonely since {person} moved away.", "My old dog passed away {time_past}.",
             "I did not get the job at {place}. I really wanted it.", "Everything feels [heavy|gray|pointless] [today|this week|lately].",
             "I miss the days when we all lived near {place}.", "I failed my [driving test|exam] [again|for the second time]."),
            ("I am so sorry. That sounds really [hard|tough|painful].", "That must hurt a lot. I am here if you [want|need] to [talk|vent].",
             "I am sorry you are going through this. It is okay to feel sad.",
             "That is really painful. Be gentle with yourself today."),
            ("sad", "low", "slow")),
    "angry": (("{person} borrowed {thing} and broke it without saying a word!",
               "I waited an hour at {place} and nobody showed up!", "My [flight|train|bus] got cancelled [again|at the last minute]!",
               "The neighbors were loud all night, I could not sleep at all!",
               "Someone took credit for my work at the meeting!"),
              ("That is really frustrating. You have every right to be upset.",
               "I understand why you are angry. Let us think about what you can do next.",
               "That is not fair at all. Take a deep breath, and we can sort it out together."),
              ("neutral", "low", "slow")),
    "surprised": (("Wait, {person} is getting married {time}?", "I just found an old letter from {person} in my coat!",
                   "There is a huge rainbow over {place} right now!", "I won a [raffle|contest|prize draw], I never win anything!",
                   "My [plant|cactus|orchid] grew a flower overnight!"),
                  ("Oh wow, really? That is such a surprise!", "No way! That is incredible.",
                   "What a surprise! How do you feel about it?"),
                  ("surprised", "high", "normal")),
    "fearful": (("I have to give a speech at {place} {time} and I am terrified.",
                 "I heard strange noises [outside my window|in the attic] [last night|this morning].",
                 "I have a doctor appointment {time} and I am scared of the results.",
                 "I think I am lost near {place} and my phone is almost dead."),
                ("That sounds scary. Let us take it one step at a time.",
                 "It is normal to feel afraid. Breathe slowly, you are going to be okay.",
                 "I am here with you. What is the first small thing you can do right now?"),
                ("neutral", "normal", "slow")),
    "disgusted": (("There was a hair in my {food} at the restaurant.", "The fridge at {place} smells horrible.",
                   "Someone left old {food} in the sink for a week.", "I stepped in something gross at {place}."),
                  ("Ugh, that is really unpleasant. I would ask for a replacement.",
                   "Yuck, that sounds awful. A good cleaning will help.",
                   "That is gross. I am sorry you had to deal with that."),
                  ("disgusted", "normal", "normal")),
    "neutral": (("I need to reorganize my schedule for {time}.", "I am trying to decide between {activity} and reading.",
                 "Can you remind me what I should pack for {place}?"),
                ("{ack} Let us make a short list together.", "{ack} It depends on how much energy you have.",
                 "{ack} Start with the essentials and add the rest later."),
                ("neutral", "normal", "normal")),
}
_MORE_EMOTION = {  # extra (situations, replies) per emotion, with inline alternations
    "happy": (("[Guess what?|You will not believe it.] {person} [got engaged|got the promotion|is having a baby]!",
               "I [finally|just] [finished|ran] my first [marathon|half marathon|ten kilometer race] {time_past}!",
               "We are going to {place} {time} and I [cannot wait|am thrilled]!",
               "I [got|received] a [lovely|surprise|sweet] [letter|gift|call] from {person} today!"),
              ("[That is|What] [brilliant|great|lovely] news! [You must be thrilled.|I love hearing that.]",
               "[Yay!|Oh, how exciting!] [You totally deserve it.|That is a big deal.] [How do you feel?|Tell me more.]",
               "[Congratulations!|Well done!] [That is worth celebrating|Treat yourself] {time}.")),
    "sad": (("{person} [and I|and I just] [had a big fight|stopped talking] and I [feel awful|miss them].",
             "I [lost|broke] [the|my] [watch|ring|necklace] {person} gave me {time_past}.",
             "[Nobody|No one] remembered my birthday {time_past}.",
             "I [have to|need to] [move out of|leave] {place} and it [breaks my heart|makes me sad]."),
            ("[Oh,|Oh no,] [that is so sad|I am really sorry]. [That must be hard.|It sounds painful.]",
             "[I am sorry.|That hurts.] [It makes sense that you feel low.|Anyone would feel sad about that.]",
             "[That is a real loss.|That is heavy.] [Would it help to talk about it?|I am listening.]")),
    "angry": (("{person} [cancelled on me|forgot about our plans] [again|for the third time|at the last minute]!",
               "The [shop|store] at {place} [charged me twice|sold me a broken {thing}] and [will not|refuses to] help!",
               "[Somebody|Someone] [parked in|blocked] my spot [again|all day] {time_past}!"),
              ("[Ugh,|Wow,] that is [infuriating|so annoying|really unfair]. [No wonder you are upset.|I would be angry too.]",
               "[That is not okay.|That sounds maddening.] [Let us figure out what to say.|Write down what happened first.]",
               "[I get why you are mad.|You have every reason to be annoyed.] [Take a breath, then|Maybe] [call them|ask for a refund|talk to {person}].")),
    "surprised": (("[Guess who|You will never guess who] I [ran into|saw] at {place}? {person_cap}!",
                   "{person_cap} [just told me|just announced] they are moving to {place}!",
                   "[The|My] {thing} [arrived|showed up] [a week early|a month early|out of nowhere]!"),
                  ("[Wow,|Whoa,|Oh my,] [I did not see that coming|what a twist|that is unexpected]!",
                   "[Really?|Seriously?|No way!] [How did that happen?|What did you say?|How do you feel?]")),
    "fearful": (("I [think|am afraid] I [left|forgot] the stove on and I am [already at|stuck at] {place}.",
                 "{person_cap} is [not answering|late] and it is getting [dark|late]. I am [worried|scared].",
                 "I have [a job interview|an exam|a big presentation] {time} and I [cannot sleep|keep panicking]."),
                ("[That sounds stressful.|I understand the worry.] [Let us make a plan.|Breathe first.] [What can you check right now?|Who can you call?]",
                 "[It is okay to be nervous.|Fear is normal here.] [Focus on|Start with] [one thing|the next step] at a time.")),
    "disgusted": (("[My roommate|{person_cap}] [never cleans|left a mess in] the [bathroom|kitchen] [again|for days].",
                   "I found [mold|a bug] in the {food} [I bought|from the store] {time_past}.",
                   "The [bus|train] to {place} [smelled awful|was filthy] {time_past}."),
                  ("[Eww,|Yuck,|Ugh,] [that is nasty|that sounds disgusting]. [Throw it out|Take a photo] and [complain|ask for a refund].",
                   "[That is really gross.|How unpleasant.] [No one should have to deal with that.|I would be grossed out too.]")),
    "neutral": (("I [want|need] to [plan|organize] {activity} {time}. [Where do I start?|Any ideas?]",
                 "Can you [help me|remind me how to] [budget for|plan] a trip to {place}?",
                 "What is a [good|simple] way to [keep track of|remember] my tasks {time}?"),
                ("{ack} [Write down|List] [three|the] [main things|priorities] and [start with the hardest|do the easiest first].",
                 "{ack} [Block some time|Set a reminder] {time} and [keep it simple|check in with yourself].")),
}
EMOTION = {k: (sit + _MORE_EMOTION[k][0], rep + _MORE_EMOTION[k][1], style) for k, (sit, rep, style) in EMOTION.items()}

EMOTION_SUPPORT = ("[It is okay|It is fine|It makes sense] to feel [this way|like that]. [Take your time.|I am listening.]",
                   "[Maybe|Perhaps] [talk to|call] {person} about it {time}. [Sharing helps.|It might help.]",
                   "[One small step|A short walk|A glass of water] [can help|might help] [right now|a little].",
                   "[You are not overreacting.|Your feelings are valid.] [Anyone would feel that way.|It is a lot.]",
                   "[If I were you,|In your place,] I would [rest a bit|sleep on it] and [decide|think about it] {time}.")
EMOTION_FOLLOW = ("{filler} I [do not know|have no idea] what to do now.", "Thanks for listening. It helps a little.",
                  "Do you think I am overreacting?", "What would you do in my [place|shoes]?",
                  "I just needed to tell someone.", "Yeah. It is a lot to take in.", "[Should|Would it help if] I talk to {person}?")

EVENTS: dict[str, dict] = {  # tag -> how a person describes it, and fitting assistant advice
    "knock": {"desc": ("someone knocking at the door", "a knock", "knocking"),
              "advice": ("Maybe check who is at the door before you open it.", "It could be a delivery. Go take a look.")},
    "doorbell": {"desc": ("the doorbell", "someone ringing the bell", "the bell at the door"),
                 "advice": ("Someone is at the door. Do you want to pause and answer it?", "That was the doorbell. Go ahead, I will wait.")},
    "phone_ring": {"desc": ("my phone ringing", "a phone ringing", "the phone"),
                   "advice": ("Your phone is ringing. You can take the call, I will be here.", "Sounds like a call. Answer it if it is important.")},
    "dog_bark": {"desc": ("a dog barking", "the dog next door", "barking"),
                 "advice": ("A dog is barking. Maybe it wants to go outside.", "Dogs often bark at noises we cannot hear. Check if it is okay.")},
    "alarm": {"desc": ("an alarm beeping", "the smoke alarm", "a loud beeping"),
              "advice": ("That sounds like an alarm. Please check for smoke first, safety comes first.", "If that is the smoke alarm, check the kitchen right away.")},
    "applause": {"desc": ("people clapping", "applause", "a crowd clapping"),
                 "advice": ("That is applause. Is there a show nearby?", "Sounds like a crowd clapping. Someone must have done well.")},
    "rain": {"desc": ("rain on the window", "the rain", "rain starting"),
             "advice": ("That is rain. Take an umbrella if you go out.", "Sounds like heavy rain. Maybe close the windows.")},
    "siren": {"desc": ("a siren outside", "a police siren", "an ambulance"),
              "advice": ("That is a siren. If you are driving, pull over and let it pass.", "An emergency vehicle is passing. Stay clear of the road.")},
    "car_horn": {"desc": ("a car honking", "a horn outside", "someone honking"),
                 "advice": ("Someone is honking. Maybe your ride is here.", "That is a car horn. Be careful if you are near the street.")},
    "clock_tick": {"desc": ("a clock ticking", "the ticking clock", "ticking"),
                   "advice": ("That is a clock ticking. A quiet room makes it very noticeable.", "If the ticking bothers you, move the clock to another room.")},
    "thunder": {"desc": ("thunder", "a rumble of thunder", "a storm"),
                "advice": ("That is thunder. Stay inside until the storm passes.", "A storm is coming. Unplug anything sensitive just in case.")},
    "kettle": {"desc": ("the kettle whistling", "a whistle from the kitchen", "the kettle"),
               "advice": ("Your kettle is whistling. The water is ready for tea.", "That is the kettle. Turn off the stove before you forget.")},
    "bird": {"desc": ("birds singing", "a bird chirping", "birds outside"),
             "advice": ("Those are birds singing. Spring must be close.", "Lovely, birds chirping. It sounds peaceful where you are.")},
    "footsteps": {"desc": ("footsteps", "someone walking upstairs", "steps in the hallway"),
                  "advice": ("Those are footsteps. Is someone else home?", "Sounds like someone walking nearby. Maybe a neighbor.")},
    "typing": {"desc": ("someone typing", "keyboard clicks", "typing"),
               "advice": ("That is typing. Someone is busy at a keyboard.", "Sounds like a keyboard. Working late?")},
    "glass": {"desc": ("glasses clinking", "a glass chime", "a clink"),
              "advice": ("That sounds like glasses clinking. Is there a toast?", "A clink of glass. Careful if something broke.")},
}
EVENT_USER = ("[Wait|Hang on|One second], did you hear that? I think it was {desc}.",
              "{filler} sorry, what was that? [Was that|Did you hear] {desc}?",
              "Oh! Hold on, that sounded like {desc}.", "Hmm, I just heard {desc}. What should I [do|make of it]?",
              "Can you tell what that sound was? I [think|guess|am pretty sure] [it was|that was] {desc}.",
              "Sorry, {desc} just [startled|surprised|distracted] me.",
              "[Oh|Whoa|Huh], {desc}[, right now|, again| out of nowhere]. [Did you catch that?|Can you hear it?]",
              "[Excuse me|Sorry], I [just heard|can hear] {desc} [in the background|nearby|close by].")
EVENT_NOTICE = ("[Yes,|Yeah,|Right,] I [heard|caught] it [too|as well].", "[Oh,|Hmm,|Ah,] [good ear.|I noticed.|I heard that.]",
                "[No worries.|That is okay.|Take your time.]")
EVENT_OPEN = ("{greet} I am at home {time_now} and it is pretty [noisy|loud|busy].",
              "{greet} I am trying to focus on {activity}.",
              "{greet} Let us talk about my plans for {time}.", "{greet} I am making {food} [right now|for dinner].",
              "{greet} I am [waiting for|expecting] {person} and [bored|a bit restless].",
              "{greet} Can you help me [plan|think about] {activity} {time}?",
              "{greet} I just got back from {place} and I am [tired|happy|a bit cold].")
EVENT_OPEN_REPLY = ("[Sure,|Of course,|Okay,] I am [listening|here]. [What is on your mind?|Go ahead.|Tell me more.]",
                    "[That sounds busy.|Sounds like a lot going on.] [How can I help?|What do you need?]",
                    "{ack} [Let us|We can] [take it slowly|keep it short]. What [would you like|do you want] to [talk about|do] first?")
EVENT_FOLLOW_REPLY = ("[No problem.|Sure.|Okay.] [We were talking about your plans.|Let us pick up where we left off.]",
                      "[Good.|Great.] [Tell me if it happens again.|Let me know if you hear it again.]",
                      "[It can|That can] happen [in old buildings|in busy neighborhoods|now and then]. Nothing to worry about.")
EVENT_FOLLOW = ("Okay, it stopped now. Where were we?", "Thanks. That was a bit startling.",
                "Right, good idea. I will check.", "Does that happen a lot in old buildings?", "Okay, I am back.")

MUSIC_TEMPO = (("slow", 60, 84), ("moderate", 88, 112), ("fast", 116, 150))
MUSIC_MODES = {"major": ("bright", "cheerful", "happy"), "minor": ("melancholic", "wistful", "moody")}
MUSIC_TIMBRES = {"piano": "a piano", "organ": "an organ", "pluck": "a plucked guitar", "pad": "a soft synth pad",
                 "musicbox": "a music box", "brass": "a brassy synth"}
MUSIC_USER = ("{greet} Can you hear the music [in here|in the background|I am playing]? [What do you think of it?|Do you like it?]",
              "What kind of music is [this|playing] [right now|in the background]?",
              "{filler} this [song|tune|piece] feels {mood}. [Do you agree?|Right?|Is it just me?]",
              "[Would this music be good|Does this music work|Is this music good] for {activity}?",
              "{greet} I put some music on. Does it sound {mood} to you?",
              "Could you [describe|tell me about] the music [in the background|that is playing]?")
MUSIC_ASSISTANT = ("It sounds like a {tempo_word} piece in a {mode} key, played on {timbre}. [Quite|Rather|Very] {mood}.",
                   "I hear {timbre} at a {tempo_word} tempo, [around|about|roughly] {bpm_words} beats per minute. It feels {mood}.",
                   "[This is|That is] a {mood} [tune|melody|piece] in {key} {mode}, with the sound of {timbre}.",
                   "A {tempo_word}, {mood} melody on {timbre}. [Nice|Good|Great] choice for {activity}.")
MUSIC_USER = MUSIC_USER + (
    "[Hey,|Hi,|So,] [listen to|check out] this [track|song|tune]. [What is the mood?|How would you describe it?]",
    "I [found|discovered] this [song|piece] [while {activity}|on the radio|at {place}]. [Can you tell what it is?|What do you make of it?]",
    "[Does|Would] this [tune|music] [suit|fit] a [dinner|party|quiet evening] with {person}?")
MUSIC_ASSISTANT = MUSIC_ASSISTANT + (
    "[To my ear,|I would say] it is {mood}: {timbre}, {key} {mode}, [about|around] {bpm_words} beats per minute.",
    "[Nice track.|Lovely.] {timbre_cap} [carries the melody|leads] at a {tempo_word} pace, and the {mode} key makes it {mood}.")
MUSIC_FOLLOW = ("Do you know any [songs|pieces] like this?", "Would it be better with [drums|a singer|more bass]?",
                "Should I turn it [up or down|a bit louder]?", "I like the sound of {timbre}. Is it hard to [play|learn]?",
                "Can music really change your mood?", "[Why|How come] does it feel so {mood}?")
MUSIC_ANSWER = ("Music with a {tempo_word} tempo often feels {mood}. Try something similar for {activity}.",
                "{ack} [Learning|Playing] {timbre} [is easy to start|takes some practice], and the {mode} key gives it that {mood} feel.",
                "[Yes,|Definitely,] tempo and key change how we feel. This one is {mood}.",
                "[Mostly the key.|The {mode} key does a lot.] [A|The] {mode} key [tends to sound|usually sounds] {mood}.")

BACKCHANNELS = ("mm-hm", "yeah", "uh-huh", "right", "okay", "I see", "sure", "oh", "yes", "mm")
SHORT_BACKCHANNELS = ("yeah", "right", "uh-huh", "mm", "okay", "I see", "sure", "yes")
"""Backchannels in a user monologue's gaps: the short ones (espeak-ng voices them in 0.3-0.5 s;
"mm-hm" takes 0.7-0.8 s, longer than the gaps)."""
MONOLOGUE_SENTENCES = (
    "[I have been thinking about it a lot.|It has been on my mind all week.|I keep coming back to it.]",
    "[Part of me wants to go for it.|Some days I feel ready for it.|I think I am ready for it.]",
    "[Then again, time is tight.|Money is a bit tight though.|I am a little nervous about it.]",
    "[Anyway, that is where I am.|So that is the situation.|That is the short version.]",
    "[It is hard to explain.|It is a long story.|It is complicated.]",
    "[{person} brought it up again {time_past}.|{person} mentioned it {time_past}.]",
    "[I do not want to rush it.|I want to get it right.|I would rather take it slowly.]",
    "[Honestly, I am not sure.|To be honest, I am torn.|I could go either way.]",
)
"""Sentences that lengthen a user turn into a monologue (``synth.monologue_prob``), inserted before
its closing question when it has one."""
INTERJECTIONS = ("Sorry to cut in,", "Wait, wait,", "Hold on,", "Sorry, but", "Actually,", "Oh, one second,",
                 "Hang on,", "Sorry to interrupt,")
NUM_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
             "sixteen seventeen eighteen nineteen").split()
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_words(n: int) -> str:
    """0 <= n < 1000 as English words (for tempos in scripts)."""
    if n < 20:
        return NUM_WORDS[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + NUM_WORDS[n % 10])
    rest = n % 100
    return NUM_WORDS[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
